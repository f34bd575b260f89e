"""What a receiver concludes about a signed message: dkimpy's verification through DNS.

Description:
    :func:`verify_message` hands a message (as it would leave this server, the
    ``DKIM-Signature`` field on top) to dkimpy, an independent implementation of RFC 6376
    and RFC 8463, and lets it fetch the key record the way a receiver does — except that the
    record is asked of the domain's authoritative name servers (or ``nameserver``) through
    :func:`~postwarden.dkim.dnscheck.lookup_txt`, so a resolver's cache cannot mislead. A
    verified result therefore means: a real signature over this message verifies with the
    key that DNS publishes now. ``postwarden dkim test``, ``dkim verify`` and the milter's key
    watch all come here.

    dkimpy reports why a signature fails only through its logger; a logger of our own
    collects those messages for the :class:`ReceiverVerdict`.

Errors:
    None raised: DNS trouble and malformed signatures become a verdict that did not verify,
    with the reason (``dns_error`` set when the key could not be fetched at all).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import dkim

from postwarden.dkim.dnscheck import DEFAULT_TIMEOUT, DnsFailure, lookup_txt


@dataclass(frozen=True)
class ReceiverVerdict:
    """dkimpy's conclusion about the first DKIM-Signature of a message."""

    ok: bool
    domain: str
    selector: str
    algorithm: str
    detail: str
    server: str = ""
    dns_error: bool = False

    @property
    def result(self) -> str:
        """The Authentication-Results word (RFC 8601): pass, fail, temperror or none."""
        if self.ok:
            return "pass"
        if self.dns_error:
            return "temperror"
        return "fail" if self.domain else "none"


class _Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.INFO:
            self.messages.append(record.getMessage())


def verify_message(
    message: bytes, *, nameserver: str | None = None, timeout: float = DEFAULT_TIMEOUT
) -> ReceiverVerdict:
    """Verify the first ``DKIM-Signature`` of *message* with dkimpy, keys from DNS."""
    collector = _Collector()
    logger = logging.Logger("postwarden.dkim.receiver.dkimpy")  # not registered: no output
    logger.addHandler(collector)
    asked: list[str] = []
    failures: list[str] = []

    def dnsfunc(name: bytes | str, timeout: float = timeout) -> bytes | None:
        text = name.decode("ascii", "replace") if isinstance(name, bytes) else name
        try:
            answer = lookup_txt(text.rstrip("."), nameserver=nameserver, timeout=timeout)
        except DnsFailure as exc:
            failures.append(str(exc))
            raise dkim.DnsTimeoutError(str(exc)) from None
        asked.append(answer.server)
        if not answer.records:
            return None
        return b"".join(answer.records[0])

    verifier = dkim.DKIM(message, logger=logger, timeout=int(max(1, timeout)))
    try:
        ok = bool(verifier.verify(dnsfunc=dnsfunc))
    except dkim.DKIMException as exc:
        ok = False
        collector.messages.append(str(exc))
    fields = dict(verifier.signature_fields or {})
    domain = _text(fields.get(b"d"))
    selector = _text(fields.get(b"s"))
    if ok:
        detail = f"signature by d={domain} s={selector} verifies with the key published in DNS"
    elif not fields:
        detail = collector.messages[-1] if collector.messages else "the message is not signed"
    else:
        why = "; ".join(failures or collector.messages) or "the signature does not verify"
        detail = f"signature by d={domain} s={selector} does not verify: {why}"
    return ReceiverVerdict(
        ok,
        domain,
        selector,
        _text(fields.get(b"a")),
        detail,
        server=asked[-1] if asked else "",
        dns_error=bool(failures),
    )


def _text(value: bytes | None) -> str:
    return value.decode("ascii", "replace") if value else ""
