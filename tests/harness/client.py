"""SMTP client for integration tests: one transaction, every reply recorded, nothing raised.

Description:
    send() runs one SMTP transaction against a Postfix listener with smtplib and returns a
    SendResult with the reply to MAIL, to each RCPT, to DATA, and the queue id parsed from
    "250 2.0.0 Ok: queued as XXXX". Rejections are results, not exceptions: they are what
    tests assert.

    The client may play any sender with XCLIENT (Postfix's smtpd_authorized_xclient_hosts must
    list the address the client connects from): ADDR for an IPv4 or IPv6 client address and
    LOGIN for a SASL-authenticated user. After XCLIENT the server greets again with 220, and
    the client must send EHLO again.

Protocol:
    EHLO, [STARTTLS, EHLO], [XCLIENT ADDR=.. LOGIN=.., EHLO], MAIL, RCPT..., DATA, QUIT.
    XCLIENT values are xtext (RFC 3461 section 4); an IPv6 address is sent as "IPV6:addr".

Errors:
    XclientRefused / SMTPException when the harness cannot set up the session as asked
    (XCLIENT refused, STARTTLS failed, connection refused): then the test would silently run
    as a different, trusted client, so that must never pass for a result. A server that drops
    the connection after a 421 reply ends the transaction; the result shows the 421.

Security:
    `sasl_user` is not a password login: XCLIENT LOGIN only works from authorized hosts, and
    Postfix honours it only on listeners with smtpd_sasl_auth_enable = yes.
"""

from __future__ import annotations

import ipaddress
import re
import smtplib
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import formatdate, make_msgid
from pathlib import Path

_QUEUED_AS = re.compile(r"queued as ([0-9A-Za-z]+)")
_XTEXT_SAFE = set(range(33, 127)) - {ord("+"), ord("=")}


class XclientRefused(smtplib.SMTPException):
    """The server did not accept XCLIENT (is the client in smtpd_authorized_xclient_hosts?)."""


@dataclass(frozen=True)
class Reply:
    """An SMTP reply: code and text (continuation lines joined with newlines)."""

    code: int
    text: str

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 300

    def __str__(self) -> str:
        return f"{self.code} {self.text}"


@dataclass(frozen=True)
class SendResult:
    """Replies of one transaction; `data` is None when no recipient was accepted."""

    mail: Reply
    rcpts: dict[str, Reply]
    data: Reply | None
    xclient: Reply | None
    tls: bool

    @property
    def queue_id(self) -> str | None:
        """The Postfix queue id from the DATA reply, when the message was queued."""
        if self.data is None or not self.data.ok:
            return None
        match = _QUEUED_AS.search(self.data.text)
        return match.group(1) if match else None

    @property
    def accepted(self) -> list[str]:
        return [rcpt for rcpt, reply in self.rcpts.items() if reply.ok]


def xtext(value: str) -> str:
    """Encode `value` as RFC 3461 xtext."""
    return "".join(chr(b) if b in _XTEXT_SAFE else f"+{b:02X}" for b in value.encode())


def xclient_args(client_ip: str | None, sasl_user: str | None) -> str:
    """The XCLIENT command arguments for the given client identity."""
    args = []
    if client_ip is not None:
        addr = ipaddress.ip_address(client_ip)
        args.append(f"ADDR={'IPV6:' if addr.version == 6 else ''}{addr.compressed}")
    if sasl_user is not None:
        args.append(f"LOGIN={xtext(sasl_user)}")
    return " ".join(args)


def build_message(
    mail_from: str,
    rcpts: Sequence[str],
    headers: Mapping[str, str] | None = None,
    body: str = "test message\n",
) -> EmailMessage:
    """A small valid message; `headers` add to or replace the default header fields."""
    msg = EmailMessage()
    defaults = {
        "From": mail_from or "MAILER-DAEMON@harness.test",
        "To": ", ".join(rcpts),
        "Subject": "harness test",
        "Date": formatdate(localtime=True),
        "Message-ID": make_msgid(domain="harness.test"),
    }
    for name, value in {**defaults, **(headers or {})}.items():
        msg[name] = value
    msg.set_content(body)
    return msg


def message_bytes(
    message: bytes | str | EmailMessage | None,
    mail_from: str,
    rcpts: Sequence[str],
    headers: Mapping[str, str] | None,
) -> bytes:
    """The message to send, with CRLF line ends.

    None builds a message (headers override the defaults); bytes, str and EmailMessage are
    sent as they are, with `headers` prepended as extra header lines.
    """
    if message is None:
        return build_message(mail_from, rcpts, headers).as_bytes(policy=SMTP_POLICY)
    if isinstance(message, EmailMessage):
        data = message.as_bytes(policy=SMTP_POLICY)
    else:
        data = message.encode() if isinstance(message, str) else message
    extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    return extra.encode() + re.sub(rb"\r\n|\r|\n", b"\r\n", data)


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """Verify against `ca_file` (chain and host name), or accept any certificate when None."""
    if ca_file is not None:
        return ssl.create_default_context(cafile=str(ca_file))
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def send(
    port: int,
    mail_from: str,
    rcpts: Sequence[str],
    *,
    host: str = "127.0.0.1",
    client_ip: str | None = None,
    helo: str = "client.harness.test",
    sasl_user: str | None = None,
    starttls: bool = False,
    ca_file: Path | None = None,
    source_address: str | None = None,
    message: bytes | str | EmailMessage | None = None,
    headers: Mapping[str, str] | None = None,
    mail_options: Sequence[str] = (),
    rcpt_options: Mapping[str, Sequence[str]] | None = None,
    timeout: float = 10.0,
) -> SendResult:
    """Run one transaction from mail_from to rcpts on host:port; see the module docstring."""
    source = (source_address, 0) if source_address else None
    with smtplib.SMTP(
        host, port, local_hostname=helo, timeout=timeout, source_address=source
    ) as smtp:
        smtp.ehlo(helo)
        if starttls:
            smtp.starttls(context=tls_context(ca_file))
            smtp.ehlo(helo)
        xclient = _xclient(smtp, helo, xclient_args(client_ip, sasl_user))
        mail, replies, data = _transaction(
            smtp,
            mail_from,
            rcpts,
            mail_options,
            rcpt_options or {},
            message_bytes(message, mail_from, rcpts, headers),
        )
    return SendResult(mail=mail, rcpts=replies, data=data, xclient=xclient, tls=starttls)


def _xclient(smtp: smtplib.SMTP, helo: str, args: str) -> Reply | None:
    """Send XCLIENT with `args` (if any) and EHLO again; raise when refused."""
    if not args:
        return None
    code, text = smtp.docmd("XCLIENT", args)
    reply = Reply(code, text.decode(errors="replace"))
    if code != 220:
        raise XclientRefused(f"XCLIENT {args}: {reply}")
    smtp.ehlo(helo)
    return reply


def _transaction(
    smtp: smtplib.SMTP,
    mail_from: str,
    rcpts: Sequence[str],
    mail_options: Sequence[str],
    rcpt_options: Mapping[str, Sequence[str]],
    data: bytes,
) -> tuple[Reply, dict[str, Reply], Reply | None]:
    """MAIL, each RCPT, and DATA when a recipient was accepted; stop after a 421."""
    mail = Reply(*_decoded(smtp.mail(mail_from, list(mail_options))))
    replies: dict[str, Reply] = {}
    if mail.ok:
        for rcpt in rcpts:
            replies[rcpt] = Reply(*_decoded(smtp.rcpt(rcpt, list(rcpt_options.get(rcpt, ())))))
            if replies[rcpt].code == 421:
                return mail, replies, None
    if not any(r.ok for r in replies.values()):
        return mail, replies, None
    try:
        return mail, replies, Reply(*_decoded(smtp.data(data)))
    except smtplib.SMTPDataError as refused:
        return mail, replies, Reply(refused.smtp_code, refused.smtp_error.decode(errors="replace"))


def _decoded(reply: tuple[int, bytes]) -> tuple[int, str]:
    return reply[0], reply[1].decode(errors="replace")
