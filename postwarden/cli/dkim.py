"""``postwarden dkim create | show | verify | import | delete``: DKIM keys of a hosted domain.

Description:
    ``create [--selector S] [--bits 1024|2048] [--algorithm rsa|ed25519]`` makes a key
    (default: RSA 2048 bits, the selector from the domain's ``dkim.selector`` setting,
    normally ``postwarden``) and shows the DNS record to publish: the host name
    ``S._domainkey.DOMAIN`` and the TXT value cut into strings of at most 255 bytes.
    ``import --selector S --key-file F`` takes an existing key instead (OpenDKIM's PKCS#1
    ``S.private``, PKCS#8 PEM, or dkimpy's Ed25519 form). A new or imported key is pending.

    ``verify [--selector S] [--nameserver HOST[:PORT]]`` looks the record up at the
    domain's authoritative name servers (or at the one given) and compares it with the key
    (default: the newest pending selector, else the active one). On success that key becomes
    the domain's active key, the one the milter signs with, and the previous active key is
    retired; creating a key for a domain that already signs therefore changes nothing until
    the new selector verifies. On failure the exit status is 1 and the message says which of
    missing / different key / revoked / DNS error it was; the key's status stays as it was.
    Either way the time and result of the check are kept (``show``).

    ``show`` lists the keys with their status, and the record to publish for pending and
    active ones. ``delete --selector S`` forgets a pending or retired key and its file.

    Every one of these is recorded in the audit trail (``postwarden history``). The work
    is :mod:`postwarden.admin.dkim`'s, shared with the web console.

Errors:
    Bad input (a selector, size or algorithm that is not valid, a selector already taken,
    an unreadable key) names the bad token; exit 1, nothing changed.

Security:
    Key files are created as the state directory's owner (the service user), mode 0600.
    Private key material is never printed.
"""

from __future__ import annotations

import argparse
import datetime
from pathlib import Path
from typing import Any

from postwarden.admin import dkim
from postwarden.cli import _settings
from postwarden.cli._command import Command, actions
from postwarden.cli._env import Environment, ExitStatus, table
from postwarden.dkim import record
from postwarden.dkim.dnscheck import DEFAULT_TIMEOUT, check_record
from postwarden.settings.model import DomainBlock

PROPAGATION = (
    "DNS changes can take up to 72 hours to propagate; publish the record if you have not,"
    " and run `postwarden dkim verify` again later."
)


def configure(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    add = actions(parser, common)
    creating = add("create", "create a key and show the DNS record to publish")
    creating.add_argument("--selector", metavar="S", help="default: the dkim.selector setting")
    creating.add_argument("--bits", metavar="N", help="RSA key size: 1024 or 2048 (default)")
    creating.add_argument("--algorithm", metavar="A", default="rsa", help="rsa (default), ed25519")
    showing = add("show", "list the keys, their status and DNS records")
    verifying = add("verify", "check the DNS record; on success sign with this key")
    verifying.add_argument(
        "--selector", metavar="S", help="default: the newest pending key, else the active one"
    )
    verifying.add_argument(
        "--nameserver",
        metavar="HOST[:PORT]",
        help="ask this server (default: the domain's authoritative servers)",
    )
    verifying.add_argument(
        "--timeout", metavar="SECONDS", type=float, default=DEFAULT_TIMEOUT, help="per query"
    )
    importing = add("import", "take an existing private key (e.g. from OpenDKIM)")
    importing.add_argument("--selector", metavar="S", required=True)
    importing.add_argument("--key-file", metavar="F", required=True, help="PEM or dkimpy key")
    importing.add_argument("--algorithm", metavar="A", help="rsa or ed25519 (default: the key's)")
    deleting = add("delete", "forget a pending or retired key and delete its file")
    deleting.add_argument("--selector", metavar="S", required=True)
    for sub in (creating, showing, verifying, importing, deleting):
        sub.add_argument("--domain", metavar="D", help="the hosted domain (default: the primary)")


def _record_data(rec: dkim.Record) -> dict[str, Any]:
    return {
        "host": rec.host,
        "txt": rec.txt,
        "txt_strings": rec.strings,
        "zone_line": rec.zone_line,
    }


def _record_text(data: dict[str, Any]) -> str:
    strings = "\n".join(f'         "{s}"' for s in data["txt_strings"]).lstrip()
    return (
        f"  host:  {data['host']}\n  type:  TXT\n  value: {strings}\n\n"
        f"Zone file line:\n{data['zone_line']}"
    )


def _new_key(env: Environment, new: dkim.NewKey, verb: str) -> ExitStatus:
    row, domain = new.row, new.row.domain
    data = {
        "domain": domain,
        "selector": row.selector,
        "algorithm": row.algorithm.value,
        "bits": row.bits,
        "status": row.status.value,
        "key_file": str(new.key_file),
        "active_selector": new.active_selector,
        **_record_data(new.record),
    }
    keeps = (
        f"{domain} keeps signing with selector {new.active_selector!r} until this one verifies.\n"
        if new.active_selector
        else ""
    )
    env.emit(
        data,
        f"{verb} {new.kind} key for {domain}, selector {row.selector!r} (pending).\n{keeps}"
        f"Publish this TXT record in the DNS of {domain}, then run"
        f" `postwarden dkim verify --domain {domain}`:\n\n{_record_text(data)}",
    )
    return ExitStatus.OK


def _create(env: Environment, args: argparse.Namespace) -> ExitStatus:
    new = dkim.create(
        _settings.admin(env),
        args.domain,
        selector=args.selector,
        bits=args.bits,
        algorithm=args.algorithm,
    )
    return _new_key(env, new, "Created")


def _import(env: Environment, args: argparse.Namespace) -> ExitStatus:
    new = dkim.import_key(
        _settings.admin(env),
        args.domain,
        selector=args.selector,
        key_file=Path(args.key_file),
        algorithm=args.algorithm,
    )
    return _new_key(env, new, "Imported")


def _when(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.datetime.fromtimestamp(timestamp).astimezone().isoformat(timespec="seconds")


def _row_data(view: dkim.KeyView) -> dict[str, Any]:
    row = view.row
    data: dict[str, Any] = {
        "selector": row.selector,
        "algorithm": row.algorithm.value,
        "bits": row.bits,
        "status": row.status.value,
        "created": _when(row.created),
        "verified": _when(row.verified),
        "last_check": _when(row.last_check),
        "last_result": row.last_result,
        "host": record.host_name(row.selector, row.domain),
    }
    if view.record is not None:
        data.update(_record_data(view.record))
    if view.problem is not None:
        data["key_problem"] = view.problem
    return data


def _show(env: Environment, args: argparse.Namespace) -> ExitStatus:
    domain, block, views = dkim.show(_settings.admin(env), args.domain)
    rows = [_row_data(view) for view in views]
    active = next((r["selector"] for r in rows if r["status"] == "active"), None)
    data = {
        "domain": domain,
        "enabled": block.dkim.enabled,
        "signing_selector": active,
        "keys": rows,
    }
    env.emit(data, lambda: _show_text(domain, block, active, rows))
    return ExitStatus.OK


def _show_text(
    domain: str, block: DomainBlock, active: str | None, rows: list[dict[str, Any]]
) -> str:
    if not rows:
        return f"{domain}: no DKIM keys (create one with `postwarden dkim create`)"
    if not block.dkim.enabled:
        state = "signing is off in the settings (dkim.enabled: false)"
    else:
        state = f"signing with selector {active!r}" if active else "not signing (no verified key)"
    lines = [
        f"{domain}: {state}",
        "",
        table(
            [
                [
                    r["selector"],
                    r["algorithm"],
                    str(r["bits"] or "-"),
                    r["status"],
                    r["created"] or "-",
                    r["verified"] or "-",
                    (r["last_result"] or "-").split(":")[0],
                ]
                for r in rows
            ],
            ["SELECTOR", "ALGORITHM", "BITS", "STATUS", "CREATED", "VERIFIED", "LAST CHECK"],
        ),
    ]
    for r in rows:
        if "txt" in r:
            lines += ["", f"{r['selector']} ({r['status']}):", _record_text(r)]
        elif "key_problem" in r:
            lines += ["", f"{r['selector']} ({r['status']}): {r['key_problem']}"]
    return "\n".join(lines)


def _verify(env: Environment, args: argparse.Namespace) -> ExitStatus:
    done = dkim.verify(
        _settings.admin(env),
        args.domain,
        selector=args.selector,
        nameserver=args.nameserver,
        timeout=args.timeout,
        lookup=check_record,
    )
    result, domain, selector = done.result, done.domain, done.row.selector
    data = {
        "domain": domain,
        "selector": selector,
        "host": result.name,
        "ok": result.ok,
        "result": result.outcome.value,
        "reason": result.outcome.description,
        "detail": result.detail,
        "server": result.server,
        "status": done.row.status.value,
        "retired_selector": done.retired.selector if done.retired else None,
    }
    if not result.ok:
        env.emit(data, "")
        env.stderr.write(
            f"postwarden: error: the DKIM key of {domain} with selector {selector!r} is"
            f" not verified: {result.outcome.description} ({result.detail}).\n"
            f"  {PROPAGATION}\n"
        )
        return ExitStatus.ERROR
    lines = [f"{result.detail}.", f"{domain} now signs with selector {selector!r}."]
    if done.retired:
        lines.append(f"Selector {done.retired.selector!r} is retired (kept until deleted).")
    if not done.signing_enabled:
        lines.append("Signing is off in the settings (dkim.enabled: false) until turned on.")
    env.emit(data, "\n".join(lines))
    return ExitStatus.OK


def _delete(env: Environment, args: argparse.Namespace) -> ExitStatus:
    domain, row, removed = dkim.delete(_settings.admin(env), args.domain, args.selector)
    env.emit(
        {"domain": domain, "selector": row.selector, "status": row.status.value, "file": removed},
        f"{domain}: {row.status.value} key {row.selector!r} deleted",
    )
    return ExitStatus.OK


def run(env: Environment, args: argparse.Namespace) -> ExitStatus:
    action = {
        "create": _create,
        "show": _show,
        "verify": _verify,
        "import": _import,
        "delete": _delete,
    }[args.action]
    return action(env, args)


COMMAND = Command(
    "dkim",
    "create, show, verify, import or delete DKIM keys",
    configure,
    run,
    description="DKIM keys per hosted domain: create or import a key (pending), publish its"
    " TXT record, verify it in DNS (it then signs; the previous key is retired).",
)
