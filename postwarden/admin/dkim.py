"""DKIM keys of a hosted domain: create, import, show, verify (begin authentication), delete.

Description:
    A new or imported key is pending; :func:`verify` looks its TXT record up at the
    domain's authoritative name servers (or the one given) and, when it matches, makes it
    the key the milter signs with (the previous active key is retired). Every one of these
    is an event in the audit trail (``postwarden history``) under the acting user's name:
    keys are state, not settings, so the settings digest stays and the entry says what
    happened.

Errors:
    :class:`~postwarden.admin.errors.BadInput` for a bad selector, size, algorithm or key
    file; :class:`~postwarden.dkim.store.SelectorExists` and friends from the key table.

Security:
    Private keys are kept by the store (0600 files of the service user, or a database table
    only postwarden's role reads). Private key material is never returned: only the public
    record to publish.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from postwarden.admin import scope, trail
from postwarden.admin.errors import BadInput
from postwarden.admin.session import Admin
from postwarden.dkim import keys, record
from postwarden.dkim.coverage import DomainSigning, coverage
from postwarden.dkim.dnscheck import CheckResult, check_record, parse_nameserver
from postwarden.dkim.receiver import ReceiverVerdict
from postwarden.dkim.store import DkimKeys, KeyRow, SelectorExists, Status
from postwarden.settings.model import DomainBlock


@dataclass(frozen=True)
class Record:
    """The DNS record to publish for a key."""

    host: str
    txt: str
    strings: list[str]
    zone_line: str


@dataclass(frozen=True)
class NewKey:
    row: KeyRow
    key_file: str  # where the store keeps the private key, in words
    record: Record
    active_selector: str | None

    @property
    def kind(self) -> str:
        """``an Ed25519`` / ``a 2048-bit RSA``: the key in words, with its article."""
        if self.row.algorithm is keys.Algorithm.ED25519:
            return "an Ed25519"
        return f"a {self.row.bits}-bit RSA"


@dataclass(frozen=True)
class KeyView:
    row: KeyRow
    record: Record | None
    problem: str | None


@dataclass(frozen=True)
class Verified:
    domain: str
    row: KeyRow  # after the check
    result: CheckResult
    retired: KeyRow | None
    signing_enabled: bool
    signature: ReceiverVerdict | None = None  # the proof, when one was asked for and made

    @property
    def ok(self) -> bool:
        return self.result.ok and (self.signature is None or self.signature.ok)

    @property
    def outcome(self) -> str:
        """ok, missing, different, revoked, dns-error or signature-fails."""
        if not self.result.ok or self.signature is None or self.signature.ok:
            return self.result.outcome.value
        return "dns-error" if self.signature.dns_error else "signature-fails"

    @property
    def detail(self) -> str:
        if self.signature is None:
            return self.result.detail
        return f"{self.result.detail}; {self.signature.detail}"


Prover = Callable[[str, str, keys.PrivateKey], ReceiverVerdict]


def record_of(key: keys.PrivateKey, selector: str, domain: str) -> Record:
    value = record.format_record(key)
    host = record.host_name(selector, domain)
    return Record(
        host,
        value,
        record.split_strings(value),
        f"{host}. IN TXT ( {record.format_zone_strings(value)} )",
    )


@contextlib.contextmanager
def _table(admin: Admin) -> Iterator[DkimKeys]:
    with admin.state() as db:
        assert db is not None
        yield DkimKeys(db)


def _target(admin: Admin, domain: str | None) -> tuple[str, DomainBlock]:
    settings = admin.read().settings
    view = scope.view(settings, scope.select(settings, admin.actor, domain))
    return view.domain, view.block


def _event(admin: Admin, domain: str, what: str) -> None:
    trail.record_event(admin, what, domain)


def selector_of(text: str) -> str:
    try:
        return keys.check_selector(text)
    except keys.BadSelector as exc:
        raise BadInput(f"--selector: {exc}") from None


def algorithm_of(text: str | None) -> keys.Algorithm | None:
    if text is None:
        return None
    try:
        return keys.Algorithm.from_text(text)
    except keys.BadKey as exc:
        raise BadInput(f"--algorithm: {exc}") from None


def bits_of(text: str | None, algorithm: keys.Algorithm) -> int | None:
    if text is None or text == "":
        return None
    if algorithm is keys.Algorithm.ED25519:
        raise BadInput("--bits: an Ed25519 key has no choice of size (--bits is for RSA keys)")
    if str(text).strip() not in ("1024", "2048"):
        raise BadInput(f"--bits: {text!r} is not 1024 or 2048")
    return int(text)


def _store_new(
    admin: Admin,
    domain: str,
    selector: str,
    make_key: Callable[[], keys.PrivateKey],
    *,
    verb: str,
    hint: str = "",
) -> NewKey:
    """Make or take a key, save it as a new pending key (file, then row)."""
    with _table(admin) as table:
        if table.get(domain, selector) is not None:
            raise SelectorExists(
                f"{domain} has a key with selector {selector!r}{hint} already; choose another"
                " with --selector; nothing was changed"
            )
        key = make_key()
        where = admin.store.write_key(domain, selector, key)
        try:
            row = table.add(domain, selector, keys.algorithm_of(key), keys.bits_of(key))
        except BaseException:
            admin.store.remove_key(domain, selector)
            raise
        active = table.active(domain)
    new = NewKey(row, where, record_of(key, selector, domain), active.selector if active else None)
    _event(admin, domain, f"dkim: {verb} {new.kind} key {selector!r} for {domain} (pending)")
    return new


def create(
    admin: Admin,
    domain: str | None,
    *,
    selector: str | None = None,
    bits: str | None = None,
    algorithm: str | None = None,
) -> NewKey:
    algo = algorithm_of(algorithm) or keys.Algorithm.RSA
    size = bits_of(bits, algo)
    name, block = _target(admin, domain)
    chosen = selector_of(selector) if selector else block.dkim.selector
    return _store_new(
        admin,
        name,
        chosen,
        lambda: keys.generate(algo, size),
        verb="created",
        hint="" if selector else " (the dkim.selector setting)",
    )


def import_key(
    admin: Admin, domain: str | None, *, selector: str, key_file: Path, algorithm: str | None
) -> NewKey:
    chosen = selector_of(selector)
    algo = algorithm_of(algorithm)
    name, _ = _target(admin, domain)
    data = key_file.read_bytes()  # as root: the old signer's files may be private
    try:
        key = keys.parse_private_key(data, algorithm=algo)
    except keys.BadKey as exc:
        raise BadInput(f"{key_file}: {exc}; nothing was changed") from None
    return _store_new(admin, name, chosen, lambda: key, verb="imported")


def _view(admin: Admin, row: KeyRow) -> KeyView:
    if row.status is Status.RETIRED:
        return KeyView(row, None, None)
    try:
        key = admin.store.read_key(row.domain, row.selector)
    except keys.BadKey as exc:
        return KeyView(row, None, str(exc))
    except OSError as exc:
        return KeyView(row, None, f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "))
    return KeyView(row, record_of(key, row.selector, row.domain), None)


def show(admin: Admin, domain: str | None) -> tuple[str, DomainBlock, list[KeyView]]:
    name, block = _target(admin, domain)
    with admin.state(create=False) as db:  # showing creates nothing
        rows = DkimKeys(db).for_domain(name) if db is not None else []
    return name, block, [_view(admin, row) for row in rows]


def signing_of(admin: Admin, domain: str | None) -> DomainSigning:
    """How mail From *domain* is signed: its own key, the primary's, or not — the milter's
    rule as :func:`~postwarden.dkim.coverage.coverage` works it out for ``status``: the one
    answer ``status``, ``dkim show`` and the console give."""
    settings = admin.read().settings
    name = scope.view(settings, scope.select(settings, admin.actor, domain)).domain
    wanted = {name, settings.primary_domain}
    with admin.state(create=False) as db:
        rows = {d: DkimKeys(db).for_domain(d) if db is not None else [] for d in wanted}
    return next(e for e in coverage(settings, rows, time.time()) if e.domain == name)


def _pick(table: DkimKeys, domain: str, selector: str | None) -> KeyRow:
    if selector:
        return table.require(domain, selector_of(selector))
    row = table.newest_pending(domain) or table.active(domain)
    if row is None:
        raise BadInput(
            f"{domain} has no pending or active DKIM key; create one with"
            " `postwarden dkim create` (or name a retired one with --selector)"
        )
    return row


def verify(
    admin: Admin,
    domain: str | None,
    *,
    selector: str | None = None,
    nameserver: str | None = None,
    timeout: float,
    lookup: Callable[..., CheckResult] = check_record,
    prove: Prover | None = None,
) -> Verified:
    """Look the key's record up (with *lookup*); on a match make the key the one that signs.

    *prove* (domain, selector, key) makes the match count only when a real signature made
    with the key verifies through DNS: the command line passes the milter's signer with
    dkimpy (:mod:`postwarden.milter.dkim_probe`), which this layer may not import.
    """
    if nameserver is not None:
        parse_nameserver(nameserver)  # bad input fails before anything is looked up
    if not 0 < timeout <= 60:
        raise BadInput(f"--timeout: {timeout} is not between 0 and 60 seconds")
    name, block = _target(admin, domain)
    with _table(admin) as table:
        row = _pick(table, name, selector)
        key = admin.store.read_key(name, row.selector)
        result = lookup(name, row.selector, key, nameserver=nameserver, timeout=timeout)
        proof = prove(name, row.selector, key) if result.ok and prove is not None else None
        checked = Verified(name, row, result, None, block.dkim.enabled, proof)
        summary = f"{checked.outcome}: {checked.detail}"
        retired = None
        if checked.ok:
            retired = table.activate(name, row.selector, summary)
        else:
            table.record_check(name, row.selector, summary)
        after = table.require(name, row.selector)
    what = f"dkim: verified {row.selector!r} for {name}: {summary}"
    if checked.ok:
        what += f"\ndkim: {row.selector!r} is now the active key of {name}"
        if retired:
            what += f"; {retired.selector!r} retired"
    _event(admin, name, what)
    return Verified(name, after, result, retired, block.dkim.enabled, proof)


def delete(admin: Admin, domain: str | None, selector: str) -> tuple[str, KeyRow, bool]:
    chosen = selector_of(selector)
    name, _ = _target(admin, domain)
    with _table(admin) as table:
        row = table.delete(name, chosen)
        removed = admin.store.remove_key(name, chosen)
    _event(admin, name, f"dkim: deleted {row.status.value} key {chosen!r} of {name}")
    return name, row, removed
