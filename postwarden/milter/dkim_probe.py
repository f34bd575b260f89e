"""Sign a probe message exactly as the milter signs, for ``postwarden dkim test``/``verify``.

Description:
    Two ways to sign, both through the milter's own code:

    - :func:`sign_as_milter` runs the milter's whole plan for a message from a trusted
      client (:func:`~postwarden.milter.verdict.plan_message` over a view compiled the way
      the daemon compiles it, keys from the state database): the same key choice — the From
      domain's active key, else the primary domain's; none while a key's record is known to
      be wrong —, the same ``dkim.enabled`` rule, the same signer. What comes out is the
      message as it would leave this server.
    - :func:`sign_with_key` signs with one given key (a pending key that ``dkim verify`` or
      the key watch is about to activate) through the same signer.

    :func:`probe_message` makes the message when the administrator gives none: a From
    address in the domain, a Date, a Message-ID and a short body. :func:`authenticate`
    is "begin authentication" done fully: the record matches the key *and* a real
    signature made with it verifies with dkimpy (:mod:`postwarden.dkim.receiver`).

Security:
    Keys are loaded by the caller as the milter loads them; nothing here prints them.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from postwarden.dkim.dnscheck import DEFAULT_TIMEOUT, CheckResult, Outcome, check_record
from postwarden.dkim.keys import PrivateKey, algorithm_of
from postwarden.dkim.receiver import ReceiverVerdict, verify_message
from postwarden.milter.dkim_sign import sign
from postwarden.milter.message_file import MessageData
from postwarden.milter.verdict import MessageFacts, plan_message
from postwarden.milter.view import SigningKey, compile_view
from postwarden.settings.snapshot import Snapshot

PROBE_USER = "postwarden-dkim-test"
PROBE_RECIPIENT = "dkim-test@probe.invalid"


@dataclass(frozen=True)
class SignedProbe:
    """The message as the milter would send it, and what the milter noted."""

    raw: bytes | None  # None when the milter would not sign
    signature_domain: str
    notes: tuple[str, ...]


def probe_message(domain: str, *, now: float | None = None) -> MessageData:
    """A small message from ``postwarden-dkim-test@DOMAIN``."""
    when = time.time() if now is None else now
    headers = [
        ("From", f"postwarden DKIM test <{PROBE_USER}@{domain}>".encode()),
        ("To", f"<{PROBE_RECIPIENT}>".encode()),
        ("Subject", b"postwarden DKIM test"),
        ("Date", email.utils.formatdate(when, localtime=False).encode()),
        ("Message-ID", email.utils.make_msgid("dkim-test", domain=domain).encode()),
        ("MIME-Version", b"1.0"),
        ("Content-Type", b"text/plain; charset=us-ascii"),
    ]
    return MessageData(
        headers, b"This message tests the DKIM signature of " + domain.encode() + b".\r\n"
    )


def as_sent(message: MessageData, signature: str) -> bytes:
    """The message with the signature on top, CRLF line ends, as it leaves the server."""
    lines = [b"DKIM-Signature: " + signature.replace("\n", "\r\n").encode("ascii")]
    for name, value in message.headers:
        lines.append(
            name.encode("ascii") + b": " + value.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        )
    return b"\r\n".join(lines) + b"\r\n\r\n" + message.body


def sign_as_milter(
    snapshot: Snapshot, keys: Mapping[str, SigningKey], message: MessageData, sender: str
) -> SignedProbe:
    """Run the milter's plan on *message* as submitted by an authenticated user."""
    view = compile_view(snapshot, lambda: keys)
    facts = MessageFacts(
        client_ip="127.0.0.1",
        sasl_user=PROBE_USER,
        queue_id="DKIMTEST",
        sender=sender,
        headers=list(message.headers),
        body=message.body,
    )
    facts.add_recipient(f"<{PROBE_RECIPIENT}>", ())
    plan = plan_message(view, facts)
    raw = as_sent(message, plan.signature) if plan.signature else None
    return SignedProbe(raw, plan.signature_domain, tuple(plan.notes))


def sign_with_key(message: MessageData, domain: str, selector: str, key: PrivateKey) -> bytes:
    """*message* signed with *key* as ``d=domain s=selector`` by the milter's signer."""
    signature = sign(
        message.headers,
        message.body,
        domain=domain,
        selector=selector,
        key=key,
        algorithm=algorithm_of(key).value,
    )
    return as_sent(message, signature)


@dataclass(frozen=True)
class Authentication:
    """``dkim verify``'s and the key watch's verdict on one key: record, then signature."""

    record: CheckResult
    signature: ReceiverVerdict | None  # None when the record check already failed

    @property
    def ok(self) -> bool:
        return self.record.ok and self.signature is not None and self.signature.ok

    @property
    def dns_error(self) -> bool:
        return self.record.outcome is Outcome.DNS_ERROR or bool(
            self.signature and self.signature.dns_error
        )

    @property
    def outcome(self) -> str:
        """ok, missing, different, revoked, dns-error or signature-fails."""
        if not self.record.ok or self.signature is None:
            return self.record.outcome.value
        if self.signature.ok:
            return Outcome.OK.value
        return Outcome.DNS_ERROR.value if self.signature.dns_error else "signature-fails"

    @property
    def detail(self) -> str:
        if self.signature is None:
            return self.record.detail
        return f"{self.record.detail}; {self.signature.detail}"

    @property
    def summary(self) -> str:
        return f"{self.outcome}: {self.detail}"


def authenticate(
    domain: str,
    selector: str,
    key: PrivateKey,
    *,
    nameserver: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Authentication:
    """Is *key* published as *selector* of *domain*, and does a real signature verify?

    First the record is compared with the key (:func:`check_record`, which says missing,
    different or revoked); when it matches, a probe signed by the milter's signer with
    this key is verified by dkimpy against DNS (:func:`verify_message`).
    """
    record = check_record(domain, selector, key, nameserver=nameserver, timeout=timeout)
    if not record.ok:
        return Authentication(record, None)
    proof = prove_signature(domain, selector, key, nameserver=nameserver, timeout=timeout)
    return Authentication(record, proof)


def prove_signature(
    domain: str,
    selector: str,
    key: PrivateKey,
    *,
    nameserver: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> ReceiverVerdict:
    """A probe signed with *key* by the milter's signer, verified by dkimpy through DNS."""
    raw = sign_with_key(probe_message(domain), domain, selector, key)
    return verify_message(raw, nameserver=nameserver, timeout=timeout)


def prover(
    *, nameserver: str | None, timeout: float
) -> Callable[[str, str, PrivateKey], ReceiverVerdict]:
    """:func:`prove_signature` through *nameserver*: what ``dkim verify`` needs to activate."""
    return lambda domain, selector, key: prove_signature(
        domain, selector, key, nameserver=nameserver, timeout=timeout
    )
