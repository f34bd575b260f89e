"""``postwarden dkim create | show | verify | import | delete | test``: DKIM keys of a domain.

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

    ``verify`` activates a key only when, beyond the record, a probe signed with it by the
    milter's signer verifies with dkimpy through DNS. ``test [FILE]`` signs a probe (or
    FILE) exactly as the milter would — same key choice, same signer — and says what dkimpy,
    as a receiver, concludes (:mod:`postwarden.milter.dkim_probe`).

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
import email.utils
from pathlib import Path
from typing import Any

from postwarden.address import domain_of
from postwarden.admin import dkim, scope
from postwarden.cli import _settings
from postwarden.cli._command import Command, actions
from postwarden.cli._env import BadInput, Environment, ExitStatus, table
from postwarden.dkim import record
from postwarden.dkim.coverage import DomainSigning
from postwarden.dkim.dnscheck import check_record, parse_nameserver
from postwarden.dkim.receiver import ReceiverVerdict, verify_message
from postwarden.milter import dkim_probe
from postwarden.milter.keyring import signing_view
from postwarden.milter.message_file import MessageData, parse_message
from postwarden.settings.model import Settings
from postwarden.settings.snapshot import compile_settings

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
    testing = add("test", "sign a probe (or FILE) as the milter would; verify it with dkimpy")
    testing.add_argument(
        "file", metavar="FILE", nargs="?", help="a message to sign (default: a probe message)"
    )
    for sub in (verifying, testing):
        sub.add_argument(
            "--nameserver",
            metavar="HOST[:PORT]",
            help="ask this server (default: dns.nameserver, else the authoritative servers)",
        )
        sub.add_argument(
            "--timeout", metavar="SECONDS", type=float, help="per query (default: dns.timeout)"
        )
    importing = add("import", "take an existing private key (e.g. from OpenDKIM)")
    importing.add_argument("--selector", metavar="S", required=True)
    importing.add_argument("--key-file", metavar="F", required=True, help="PEM or dkimpy key")
    importing.add_argument("--algorithm", metavar="A", help="rsa or ed25519 (default: the key's)")
    deleting = add("delete", "forget a pending or retired key and delete its file")
    deleting.add_argument("--selector", metavar="S", required=True)
    for sub in (creating, showing, verifying, importing, deleting, testing):
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
    admin = _settings.admin(env)
    domain, block, views = dkim.show(admin, args.domain)
    how = dkim.signing_of(admin, domain)
    rows = [_row_data(view) for view in views]
    active = next((r["selector"] for r in rows if r["status"] == "active"), None)
    data = {
        "domain": domain,
        "enabled": block.dkim.enabled,
        "signing_selector": active,
        "signing": how.to_data(),
        "keys": rows,
    }
    env.emit(data, lambda: _show_text(domain, how, rows))
    return ExitStatus.OK


def _show_text(domain: str, how: DomainSigning, rows: list[dict[str, Any]]) -> str:
    if not rows:
        create = " (create one with `postwarden dkim create`)"
        return f"{domain}: {how.describe()}\n{domain} has no DKIM keys of its own{create}"
    lines = [
        f"{domain}: {how.describe()}",
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
    admin = _settings.admin(env)
    nameserver, timeout = _dns(args, admin.read().settings)
    done = dkim.verify(
        admin,
        args.domain,
        selector=args.selector,
        nameserver=nameserver,
        timeout=timeout,
        lookup=check_record,
        prove=dkim_probe.prover(nameserver=nameserver, timeout=timeout),
    )
    result, domain, selector = done.result, done.domain, done.row.selector
    data = {
        "domain": domain,
        "selector": selector,
        "host": result.name,
        "ok": done.ok,
        "result": done.outcome,
        "reason": _REASONS.get(done.outcome, result.outcome.description),
        "detail": done.detail,
        "server": result.server,
        "signature": _signature_data(done.signature),
        "status": done.row.status.value,
        "retired_selector": done.retired.selector if done.retired else None,
    }
    if not done.ok:
        env.emit(data, "")
        env.stderr.write(
            f"postwarden: error: the DKIM key of {domain} with selector {selector!r} is"
            f" not verified: {data['reason']} ({done.detail}).\n"
        )
        if result.outcome.may_propagate:  # waiting mends neither a failing server nor a typo
            env.stderr.write(f"  {PROPAGATION}\n")
        return ExitStatus.ERROR
    lines = [f"{done.detail}.", f"{domain} now signs with selector {selector!r}."]
    if done.retired:
        lines.append(f"Selector {done.retired.selector!r} is retired (kept until deleted).")
    if not done.signing_enabled:
        lines.append("Signing is off in the settings (dkim.enabled: false) until turned on.")
    env.emit(data, "\n".join(lines))
    return ExitStatus.OK


_REASONS = {"signature-fails": "a signature made with it does not verify", "ok": "published"}


def _signature_data(verdict: ReceiverVerdict | None) -> dict[str, Any] | None:
    if verdict is None:
        return None
    return {
        "result": verdict.result,
        "domain": verdict.domain,
        "selector": verdict.selector,
        "algorithm": verdict.algorithm,
        "detail": verdict.detail,
        "server": verdict.server,
    }


def _dns(args: argparse.Namespace, settings: Settings) -> tuple[str | None, float]:
    """--nameserver and --timeout, else the settings' dns block."""
    if args.nameserver is not None:
        parse_nameserver(args.nameserver)  # bad input fails before anything is looked up
    timeout = args.timeout if args.timeout is not None else float(settings.dns.timeout)
    if not 0 < timeout <= 60:
        raise BadInput(f"--timeout: {timeout} is not between 0 and 60 seconds")
    return args.nameserver or settings.dns.nameserver or None, timeout


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
        "test": _test,
    }[args.action]
    return action(env, args)


# --- test: what a receiver concludes about mail signed by the milter ---------------------


def _test(env: Environment, args: argparse.Namespace) -> ExitStatus:
    admin = _settings.admin(env)
    loaded = admin.read()
    settings = loaded.settings
    nameserver, timeout = _dns(args, settings)
    domain = scope.select(settings, admin.actor, args.domain)
    if args.file:
        message = parse_message(Path(args.file).read_bytes())
    else:
        message = dkim_probe.probe_message(domain)
    sender = _from_address(message) or f"{dkim_probe.PROBE_USER}@{domain}"
    signing_keys = signing_view(admin.store.active_keys())
    snapshot = compile_settings(settings, digest=loaded.digest)
    probe = dkim_probe.sign_as_milter(snapshot, signing_keys, message, sender)
    verdict = (
        verify_message(probe.raw, nameserver=nameserver, timeout=timeout)
        if probe.raw is not None
        else None
    )
    from_domain = domain_of(sender)
    data: dict[str, Any] = {
        "from_domain": from_domain,
        "signed": probe.raw is not None,
        "notes": list(probe.notes),
        "signature": _signature_data(verdict),
        "result": verdict.result if verdict else "none",
        "fallback": bool(verdict and verdict.domain and verdict.domain != from_domain),
        "aligned": bool(verdict and _aligned(verdict.domain, from_domain)),
    }
    env.emit(data, lambda: _test_text(data, verdict))
    return ExitStatus.OK if verdict is not None and verdict.ok else ExitStatus.ERROR


def _from_address(message: MessageData) -> str | None:
    values = [v for name, v in message.headers if name.lower() == "from"]
    found = email.utils.getaddresses([v.decode("utf-8", "replace") for v in values])
    return found[0][1] if len(found) == 1 and "@" in found[0][1] else None


def _aligned(signer: str, from_domain: str) -> bool:
    """Relaxed DMARC alignment, approximated: the same domain or one a parent of the other."""
    if not signer:
        return False
    return (
        signer == from_domain
        or from_domain.endswith("." + signer)
        or signer.endswith("." + from_domain)
    )


def _test_text(data: dict[str, Any], verdict: ReceiverVerdict | None) -> str:
    if verdict is None:
        why = "; ".join(data["notes"]) or f"{data['from_domain']} is not hosted here"
        return f"the milter would not sign this message: {why}"
    lines = [
        f"signed by the milter: d={verdict.domain} s={verdict.selector} a={verdict.algorithm}",
        f"a receiver concludes: dkim={verdict.result} ({verdict.detail})",
    ]
    if data["fallback"]:
        lines.append(
            f"{data['from_domain']} has no key that signs: the primary domain's key"
            f" ({verdict.domain}) signed instead"
            + ("" if data["aligned"] else "; not aligned with From for DMARC")
        )
    return "\n".join(lines)


COMMAND = Command(
    "dkim",
    "create, show, verify, import or delete DKIM keys",
    configure,
    run,
    description="DKIM keys per hosted domain: create or import a key (pending), publish its"
    " TXT record, verify it in DNS (it then signs; the previous key is retired).",
)
