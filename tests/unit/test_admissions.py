"""Unknown recipients: policyd's single-use admissions, and the milter asking policyd."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

from postwarden.milter.recipients import KnownRecipients
from postwarden.policyd.protocol import PolicyRequest, parse_request
from postwarden.policyd.service import (
    ADMISSIONS_PER_ADDRESS,
    Admissions,
    PolicyService,
    compile_view,
)
from postwarden.settings.load import load_text
from postwarden.settings.snapshot import compile_settings
from postwarden.util.netstring import NetstringDecoder, encode
from postwarden.util.socketmap_client import SocketmapClient


def test_an_admission_is_used_once() -> None:
    table = Admissions(lifetime=60)
    assert table.admit("a@x.test", 0)
    assert table.take("a@x.test", 1)
    assert not table.take("a@x.test", 2)  # another transaction cannot ride on it


def test_each_policy_answer_admits_one_lookup() -> None:
    table = Admissions(lifetime=60)
    table.admit("a@x.test", 0)
    table.admit("a@x.test", 1)
    assert table.take("a@x.test", 2) and table.take("a@x.test", 3)
    assert not table.take("a@x.test", 4)


def test_admissions_expire_in_order() -> None:
    table = Admissions(lifetime=60)
    table.admit("a@x.test", 0)
    table.admit("b@x.test", 30)
    assert not table.take("a@x.test", 61)
    assert table.take("b@x.test", 61)
    assert len(table) == 0 or not table.take("b@x.test", 62)


def test_the_table_is_bounded() -> None:
    table = Admissions(lifetime=60, limit=1000)
    for i in range(5000):
        table.admit(f"u{i}@x.test", 0)
    assert len(table) == 1000
    assert not table.take("u4999@x.test", 1)  # refused: rejected as unknown, fail closed
    assert table.take("u999@x.test", 1)
    for _ in range(3 * ADMISSIONS_PER_ADDRESS):
        table.admit("same@x.test", 2)
    assert sum(table.take("same@x.test", 3) for _ in range(99)) <= ADMISSIONS_PER_ADDRESS


def test_expired_admissions_make_room() -> None:
    table = Admissions(lifetime=60, limit=10)
    for i in range(10):
        table.admit(f"u{i}@x.test", 0)
    assert table.admit("late@x.test", 61) and len(table) == 1


SETTINGS = """\
version: 1
primary_domain: hosted.test
domains:
  hosted.test:
    inbound_routing:
      - {name: r, route: old, condition: external, unknown_recipients: true}
routes:
  old: {host: "[192.0.2.10]"}
"""


def _service() -> PolicyService:
    view = compile_view(compile_settings(load_text(SETTINGS, "t").settings))
    return PolicyService(lambda: view, lambda event: None)


def _rcpt(recipient: str) -> PolicyRequest:
    return parse_request(
        f"request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=198.51.100.9\n"
        f"sender=a@ext.example\nrecipient={recipient}".encode()
    )


def test_rcptok_admits_what_the_policy_answer_noted_and_the_milter_can_ask() -> None:
    service = _service()
    assert service.answer_socketmap(b"rcptok nobody@hosted.test") == b"NOTFOUND "
    service.answer_policy(_rcpt("<Nobody@Hosted.Test.>"))
    assert service.answer_socketmap(b"unknown nobody@hosted.test") == b"NOTFOUND "
    assert service.answer_socketmap(b"rcptok Nobody@hosted.test") == b"OK OK"
    assert service.answer_socketmap(b"rcptok Nobody@hosted.test") == b"NOTFOUND "  # used up
    assert service.answer_socketmap(b"unknown <Nobody@hosted.test>") == b"OK unknown"
    assert service.answer_socketmap(b"unknown bob@hosted.test") == b"NOTFOUND "


def test_the_milter_asks_policyd_over_a_real_socket(tmp_path: Path) -> None:
    service = _service()
    service.answer_policy(_rcpt("nobody@hosted.test"))
    service.answer_socketmap(b"rcptok nobody@hosted.test")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(tmp_path / "sock"))
    listener.listen()

    def serve() -> None:
        conn, _ = listener.accept()
        decoder = NetstringDecoder(10_000)
        with conn:
            while data := conn.recv(4096):
                for request in decoder.feed(data):
                    conn.sendall(encode(service.answer_socketmap(request)))

    threading.Thread(target=serve, daemon=True).start()

    def connect() -> socket.socket:
        conn = socket.socket(socket.AF_UNIX)
        conn.connect(str(tmp_path / "sock"))
        return conn

    client = SocketmapClient(connect)
    known = KnownRecipients(tmp_path, client)
    assert known("bob@hosted.test") is True
    assert known("nobody@hosted.test") is False
    client.close()
    listener.close()
    broken = KnownRecipients(tmp_path, SocketmapClient(lambda: socket.create_connection(
        ("127.0.0.1", 9), timeout=1)))  # fmt: skip
    assert broken("nobody@hosted.test") is True  # nothing to ask: counted as known (logged)
