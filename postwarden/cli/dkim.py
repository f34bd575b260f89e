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

Errors:
    Bad input (a selector, size or algorithm that is not valid, a selector already taken,
    an unreadable key) names the bad token; exit 1, nothing changed.

Security:
    Key files are created as the state directory's owner (the service user), mode 0600.
    Private key material is never printed.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from postwarden.cli import _settings
from postwarden.cli._command import Command, actions
from postwarden.cli._env import BadInput, Environment, ExitStatus, table
from postwarden.dkim import keys, record
from postwarden.dkim.dnscheck import DEFAULT_TIMEOUT, check_record, parse_nameserver
from postwarden.dkim.store import DkimKeys, KeyRow, SelectorExists, Status
from postwarden.settings.model import DomainBlock, Settings
from postwarden.settings.snapshot import governing_domain
from postwarden.settings.state import StateDB
from postwarden.util.privileges import as_owner_of

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


@contextlib.contextmanager
def _state(env: Environment) -> Iterator[DkimKeys]:
    """The key table, opened (and any files made) as the state directory's owner."""
    env.state_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
    with as_owner_of(env.state_dir), StateDB.open(env.state_dir) as db:
        yield DkimKeys(db)


def _block(settings: Settings, domain: str) -> DomainBlock:
    governing = governing_domain(settings, domain)
    return (settings.domains.get(governing) if governing else None) or DomainBlock()


def _target(env: Environment, args: argparse.Namespace) -> tuple[str, DomainBlock]:
    settings = _settings.load(env).settings
    domain = _settings.selected_domain(settings, args.domain)
    return domain, _block(settings, domain)


def _selector(text: str) -> str:
    try:
        return keys.check_selector(text)
    except keys.BadSelector as exc:
        raise BadInput(f"--selector: {exc}") from None


def _algorithm(text: str | None) -> keys.Algorithm | None:
    if text is None:
        return None
    try:
        return keys.Algorithm.from_text(text)
    except keys.BadKey as exc:
        raise BadInput(f"--algorithm: {exc}") from None


def _bits(text: str | None, algorithm: keys.Algorithm) -> int | None:
    if text is None:
        return None
    if algorithm is keys.Algorithm.ED25519:
        raise BadInput("--bits: an Ed25519 key has no choice of size (--bits is for RSA keys)")
    if text.strip() not in ("1024", "2048"):
        raise BadInput(f"--bits: {text!r} is not 1024 or 2048")
    return int(text)


def _record_data(key: keys.PrivateKey, selector: str, domain: str) -> dict[str, Any]:
    value = record.format_record(key)
    host = record.host_name(selector, domain)
    return {
        "host": host,
        "txt": value,
        "txt_strings": record.split_strings(value),
        "zone_line": f"{host}. IN TXT ( {record.format_zone_strings(value)} )",
    }


def _record_text(data: dict[str, Any]) -> str:
    strings = "\n".join(f'         "{s}"' for s in data["txt_strings"]).lstrip()
    return (
        f"  host:  {data['host']}\n  type:  TXT\n  value: {strings}\n\n"
        f"Zone file line:\n{data['zone_line']}"
    )


def _store_new(
    env: Environment,
    domain: str,
    selector: str,
    make_key: Callable[[], keys.PrivateKey],
    *,
    verb: str,
    hint: str = "",
) -> ExitStatus:
    """Make or take a key, save it as a new pending key (file, then row), show its record."""
    with _state(env) as table_:
        if table_.get(domain, selector) is not None:
            raise SelectorExists(
                f"{domain} has a key with selector {selector!r}{hint} already; choose another"
                " with --selector; nothing was changed"
            )
        key = make_key()
        path = keys.write_key(env.state_dir, domain, selector, key)
        try:
            row = table_.add(domain, selector, keys.algorithm_of(key), keys.bits_of(key))
        except BaseException:
            keys.remove_key(env.state_dir, domain, selector)
            raise
        active = table_.active(domain)
    data = {
        "domain": domain,
        "selector": selector,
        "algorithm": row.algorithm.value,
        "bits": row.bits,
        "status": row.status.value,
        "key_file": str(path),
        "active_selector": active.selector if active else None,
        **_record_data(key, selector, domain),
    }
    kind = "Ed25519" if row.algorithm is keys.Algorithm.ED25519 else f"{row.bits}-bit RSA"
    keeps = (
        f"{domain} keeps signing with selector {active.selector!r} until this one verifies.\n"
        if active
        else ""
    )
    env.emit(
        data,
        f"{verb} a {kind} key for {domain}, selector {selector!r} (pending).\n{keeps}"
        f"Publish this TXT record in the DNS of {domain}, then run"
        f" `postwarden dkim verify --domain {domain}`:\n\n{_record_text(data)}",
    )
    return ExitStatus.OK


def _create(env: Environment, args: argparse.Namespace) -> ExitStatus:
    algorithm = _algorithm(args.algorithm) or keys.Algorithm.RSA
    bits = _bits(args.bits, algorithm)
    domain, block = _target(env, args)
    selector = _selector(args.selector) if args.selector else block.dkim.selector
    return _store_new(
        env,
        domain,
        selector,
        lambda: keys.generate(algorithm, bits),
        verb="Created",
        hint="" if args.selector else " (the dkim.selector setting)",
    )


def _import(env: Environment, args: argparse.Namespace) -> ExitStatus:
    selector = _selector(args.selector)
    algorithm = _algorithm(args.algorithm)
    domain, _ = _target(env, args)
    data = Path(args.key_file).read_bytes()  # as root: the old signer's files may be private
    try:
        key = keys.parse_private_key(data, algorithm=algorithm)
    except keys.BadKey as exc:
        raise BadInput(f"{args.key_file}: {exc}; nothing was changed") from None
    return _store_new(env, domain, selector, lambda: key, verb="Imported")


def _when(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.datetime.fromtimestamp(timestamp).astimezone().isoformat(timespec="seconds")


def _row_data(env: Environment, row: KeyRow) -> dict[str, Any]:
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
    if row.status is not Status.RETIRED:
        path = keys.key_path(env.state_dir, row.domain, row.selector)
        try:
            data.update(_record_data(keys.read_key(path, trusted=True), row.selector, row.domain))
        except (OSError, keys.BadKey) as exc:
            data["key_problem"] = str(exc) if isinstance(exc, keys.BadKey) else f"{path}: {exc}"
    return data


def _show(env: Environment, args: argparse.Namespace) -> ExitStatus:
    domain, block = _target(env, args)
    with _state(env) as table_:
        rows = [_row_data(env, row) for row in table_.for_domain(domain)]
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


def _pick(table_: DkimKeys, domain: str, selector: str | None) -> KeyRow:
    if selector is not None:
        return table_.require(domain, _selector(selector))
    row = table_.newest_pending(domain) or table_.active(domain)
    if row is None:
        raise BadInput(
            f"{domain} has no pending or active DKIM key; create one with"
            " `postwarden dkim create` (or name a retired one with --selector)"
        )
    return row


def _verify(env: Environment, args: argparse.Namespace) -> ExitStatus:
    if args.nameserver is not None:
        parse_nameserver(args.nameserver)  # bad input fails before anything is looked up
    if not 0 < args.timeout <= 60:
        raise BadInput(f"--timeout: {args.timeout} is not between 0 and 60 seconds")
    domain, block = _target(env, args)
    with _state(env) as table_:
        row = _pick(table_, domain, args.selector)
        key = keys.read_key(keys.key_path(env.state_dir, domain, row.selector), trusted=True)
        result = check_record(
            domain, row.selector, key, nameserver=args.nameserver, timeout=args.timeout
        )
        summary = f"{result.outcome.value}: {result.detail}"
        retired = None
        if result.ok:
            retired = table_.activate(domain, row.selector, summary)
        else:
            table_.record_check(domain, row.selector, summary)
        after = table_.require(domain, row.selector)
    data = {
        "domain": domain,
        "selector": row.selector,
        "host": result.name,
        "ok": result.ok,
        "result": result.outcome.value,
        "reason": result.outcome.description,
        "detail": result.detail,
        "server": result.server,
        "status": after.status.value,
        "retired_selector": retired.selector if retired else None,
    }
    if not result.ok:
        env.emit(data, "")
        env.stderr.write(
            f"postwarden: error: the DKIM key of {domain} with selector {row.selector!r} is"
            f" not verified: {result.outcome.description} ({result.detail}).\n"
            f"  {PROPAGATION}\n"
        )
        return ExitStatus.ERROR
    lines = [f"{result.detail}.", f"{domain} now signs with selector {row.selector!r}."]
    if retired:
        lines.append(f"Selector {retired.selector!r} is retired (kept until deleted).")
    if not block.dkim.enabled:
        lines.append("Signing is off in the settings (dkim.enabled: false) until turned on.")
    env.emit(data, "\n".join(lines))
    return ExitStatus.OK


def _delete(env: Environment, args: argparse.Namespace) -> ExitStatus:
    selector = _selector(args.selector)
    domain, _ = _target(env, args)
    with _state(env) as table_:
        row = table_.delete(domain, selector)
        removed = keys.remove_key(env.state_dir, domain, selector)
    env.emit(
        {"domain": domain, "selector": selector, "status": row.status.value, "file": removed},
        f"{domain}: {row.status.value} key {selector!r} deleted",
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
