"""Route servers for integration tests: Postfix's smtp-sink and an aiosmtpd STARTTLS sink.

Description:
    Routing tests need a "next hop" that records exactly what Postfix sent: the envelope
    (MAIL FROM and each RCPT TO with its ESMTP parameters such as NOTIFY and ORCPT), and the
    message. Both sinks listen on a free loopback port and return SinkMessage records.

    SmtpSink runs smtp-sink(1) with `-d` so each transaction becomes a dump file whose first
    lines (X-Client-Addr, X-Mail-Args, X-Rcpt-Args, ...) are the envelope as sent. It can be
    created down, started, stopped and started again on the same port, to test "route down,
    mail deferred, route back, mail delivered". Extra smtp-sink options (fault injection such as
    `-r`, `-f`, `-q`, `-W`) pass through.

    TlsSink is an aiosmtpd server in a background thread that offers STARTTLS (smtp-sink
    cannot), optionally requires it, and records whether each message came over TLS.

Protocol:
    smtp-sink dump: "X-Name: value" lines, then a three-line "Received:" header written by
    smtp-sink, then the message as received, then one empty line (smtp-sink(1) "DUMP FILE
    FORMAT"). An IPv6 client address has the prefix "ipv6:".

Errors:
    TimeoutError from wait_for(); ProcessExitedError when smtp-sink dies at start-up.
"""

from __future__ import annotations

import email
import email.policy
import os
import pwd
import ssl
import subprocess
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from .service_user import free_port, stop_process, wait_for_port
from .tlsca import CertFiles
from .wait import wait_until

_SINK_RECORDS = ("X-Client-Addr", "X-Client-Proto", "X-Helo-Args", "X-Mail-Args", "X-Rcpt-Args")


@dataclass(frozen=True)
class Recipient:
    """One RCPT TO: the address and its ESMTP parameters (NOTIFY, ORCPT, ...) by upper name."""

    address: str
    args: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SinkMessage:
    """A transaction a sink received: envelope, message bytes and whether TLS was on."""

    client_addr: str
    helo: str | None
    mail_from: str
    mail_args: dict[str, str]
    rcpts: tuple[Recipient, ...]
    raw: bytes
    tls: bool = False
    tls_version: str | None = None

    @property
    def rcpt_addresses(self) -> list[str]:
        return [r.address for r in self.rcpts]

    @property
    def message(self) -> EmailMessage:
        msg = email.message_from_bytes(self.raw, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        return msg


def parse_esmtp_args(words: Sequence[str]) -> dict[str, str]:
    """ESMTP parameters as {NAME: value}; a keyword without "=" gets the value ""."""
    args = {}
    for word in words:
        name, _, value = word.partition("=")
        args[name.upper()] = value
    return args


def _parse_path_args(text: str) -> tuple[str, dict[str, str]]:
    """ "<addr> K=V ..." into ("addr", {K: V}); "<>" is the null sender ""."""
    path, *words = text.split()
    return path.removeprefix("<").removesuffix(">"), parse_esmtp_args(words)


def parse_sink_dump(data: bytes) -> SinkMessage:
    """Parse one smtp-sink `-d` dump file into a SinkMessage."""
    lines = data.split(b"\n")
    records: list[tuple[str, str]] = []
    while lines and lines[0].split(b":", 1)[0].decode() in _SINK_RECORDS:
        name, _, value = lines.pop(0).decode().partition(": ")
        records.append((name, value))
    if not lines or not lines[0].startswith(b"Received:"):
        raise ValueError(f"not an smtp-sink dump: {data[:200]!r}")
    lines.pop(0)
    while lines and lines[0][:1] in (b" ", b"\t"):
        lines.pop(0)
    body = b"\n".join(lines)
    mail_from, mail_args = _parse_path_args(_first(records, "X-Mail-Args"))
    return SinkMessage(
        client_addr=_first(records, "X-Client-Addr").removeprefix("ipv6:"),
        helo=_first(records, "X-Helo-Args") or None,
        mail_from=mail_from,
        mail_args=mail_args,
        rcpts=tuple(Recipient(*_parse_path_args(v)) for n, v in records if n == "X-Rcpt-Args"),
        raw=body.removesuffix(b"\n"),
    )


def _first(records: list[tuple[str, str]], name: str) -> str:
    return next((value for n, value in records if n == name), "")


def _wait_for_count(get: Any, count: int, timeout: float, what: str) -> list[SinkMessage]:
    """Wait until `get()` returns at least `count` messages; return them."""

    def enough() -> tuple[list[SinkMessage]] | None:
        got = get()
        return (got,) if len(got) >= count else None

    return wait_until(enough, f"{what}: {count} messages", timeout)[0]


class SmtpSink:
    """smtp-sink(1) on host:port, dumping each transaction under DIRECTORY/dump.

    `directory` must be traversable by `user` (smtp-sink drops root privileges to it).
    """

    def __init__(
        self,
        directory: Path,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        extra_args: Sequence[str] = (),
        user: str = "postfix",
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.extra_args = list(extra_args)
        self.user = user
        self.dump_dir = directory / "dump"
        self.dump_dir.mkdir(parents=True, exist_ok=True)
        account = pwd.getpwnam(user)
        os.chown(self.dump_dir, account.pw_uid, account.pw_gid)
        self.log_file = directory / "smtp-sink.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def nexthop(self) -> str:
        """The transport(5) value that routes mail here."""
        return f"smtp:[{self.host}]:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start listening (again, on the same port); wait until the socket is up."""
        if self.running:
            return
        argv = [
            "smtp-sink",
            "-u",
            self.user,
            "-d",
            f"{self.dump_dir}/%M.",
            *self.extra_args,
            f"{self.host}:{self.port}",
            "64",
        ]
        with self.log_file.open("ab") as log:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_for_port(self.host, self.port, proc=self._proc)
        except Exception:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop smtp-sink; dumps stay. Safe to call when it is not running."""
        if self._proc is not None:
            stop_process(self._proc)
            self._proc = None

    def messages(self) -> list[SinkMessage]:
        """Every complete transaction so far (across restarts), oldest first.

        smtp-sink creates a dump at MAIL (written through a buffer), closes it after the
        message, and on abort unlinks it before closing: a dump listed first and not open
        afterwards is complete. With `-f .`/`-r .` a rejected message's dump stays.
        """
        listed = list(self.dump_dir.iterdir())
        busy = self._open_files()
        dumps = []
        for path in listed:
            if path in busy:
                continue
            try:
                dumps.append((path.stat().st_mtime_ns, path.name, path.read_bytes()))
            except FileNotFoundError:
                continue
        dumps.sort()
        return [parse_sink_dump(data) for *_, data in dumps]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[SinkMessage]:
        """Wait until at least `count` transactions are complete; return all of them."""
        return _wait_for_count(self.messages, count, timeout, f"smtp-sink :{self.port}")

    def _open_files(self) -> set[Path]:
        """Files smtp-sink still holds open: dumps of transactions in progress."""
        if not self.running:
            return set()
        assert self._proc is not None
        fd_dir = Path(f"/proc/{self._proc.pid}/fd")
        paths = set()
        for fd in fd_dir.iterdir():
            try:
                paths.add(Path(os.readlink(fd)))
            except FileNotFoundError:
                continue
        return paths


class _Recorder:
    """aiosmtpd handler: keep each RCPT's parameters, record each message with its TLS state."""

    def __init__(self) -> None:
        self.messages: list[SinkMessage] = []
        self._lock = threading.Lock()
        self._rcpt_args: weakref.WeakKeyDictionary[Envelope, list[Recipient]] = (
            weakref.WeakKeyDictionary()
        )

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        recipient = Recipient(address, parse_esmtp_args(rcpt_options))
        self._rcpt_args.setdefault(envelope, []).append(recipient)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        tls_object = session.ssl.get("ssl_object") if session.ssl else None
        content = envelope.content
        assert isinstance(content, bytes)
        record = SinkMessage(
            client_addr=session.peer[0],
            helo=session.host_name,
            mail_from=envelope.mail_from or "",
            mail_args=parse_esmtp_args(envelope.mail_options),
            rcpts=tuple(self._rcpt_args.pop(envelope, [])),
            raw=content,
            tls=session.ssl is not None,
            tls_version=tls_object.version() if tls_object else None,
        )
        with self._lock:
            self.messages.append(record)
        return "250 2.0.0 OK: queued"

    def snapshot(self) -> list[SinkMessage]:
        with self._lock:
            return list(self.messages)


class TlsSink:
    """An aiosmtpd SMTP server offering STARTTLS with `cert`, in a background thread."""

    def __init__(
        self,
        cert: CertFiles,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        require_starttls: bool = False,
        hostname: str = "tls-sink.test",
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.cert = cert
        self.require_starttls = require_starttls
        self.hostname = hostname
        self._recorder = _Recorder()
        self._controller: Controller | None = None

    @property
    def nexthop(self) -> str:
        """The transport(5) value that routes mail here."""
        return f"smtp:[{self.host}]:{self.port}"

    @property
    def tls_policy_key(self) -> str:
        """The smtp_tls_policy_maps key Postfix looks up for `nexthop`."""
        return f"[{self.host}]:{self.port}"

    def start(self) -> None:
        """Start the server thread; return when it answers."""
        if self._controller is not None:
            return
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert.cert, self.cert.key)
        self._controller = Controller(
            self._recorder,
            hostname=self.host,
            port=self.port,
            server_hostname=self.hostname,
            tls_context=context,
            require_starttls=self.require_starttls,
        )
        self._controller.start()

    def stop(self) -> None:
        """Stop the server; recorded messages stay. Safe to call when not running."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def messages(self) -> list[SinkMessage]:
        return self._recorder.snapshot()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[SinkMessage]:
        """Wait until at least `count` messages arrived; return all of them."""
        return _wait_for_count(self.messages, count, timeout, f"TLS sink :{self.port}")
