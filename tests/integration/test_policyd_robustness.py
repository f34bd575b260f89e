"""postwarden-policyd never dies of its input, and keeps its connections across reloads.

Hypothesis throws random and malformed input at the running daemon (as the service user):
binary junk, oversized requests, lines without ``=``, requests missing fields, connections
half-closed mid-request, bad netstrings. After each, the same daemon process must answer a
valid request correctly.
"""

from __future__ import annotations

import shutil
import socket
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postwarden.util.netstring import encode
from tests.harness import ServiceUser
from tests.harness.fixtures import make_traversable_dir
from tests.integration.daemons import Installation, Policyd

pytestmark = pytest.mark.postfix

SETTINGS = """\
version: 1
primary_domain: hosted.test
domains:
  hosted.test:
    blocked_ips: [203.0.113.0/24]
    tls_policies:
      - {title: t, partners: [partner.example]}
"""

VALID = (
    b"request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=203.0.113.9\n"
    b"sender=a@ext.example\nrecipient=bob@hosted.test\n\n"
)
VALID_ANSWER = (
    b"action=554 5.7.1 Client host [203.0.113.9] is blocked by the policy of hosted.test\n\n"
)


@pytest.fixture(scope="module")
def daemon(service_user: ServiceUser) -> Iterator[Policyd]:
    base = make_traversable_dir("pw-robust-")
    installation = Installation(base, service_user)
    installation.write(SETTINGS)
    policyd = Policyd(installation)
    policyd.start()
    try:
        yield policyd
    finally:
        policyd.stop()
        shutil.rmtree(base, ignore_errors=True)


def _exchange(
    port: int, data: bytes, *, half_close: bool = False, timeout: float = 2.0, end: bytes = b"\n\n"
) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        conn.sendall(data)
        if half_close:
            conn.shutdown(socket.SHUT_WR)
        chunks = []
        try:
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                if b"".join(chunks).endswith(end) and not half_close:
                    break
        except TimeoutError:
            pass
        return b"".join(chunks)


def _assert_healthy(daemon: Policyd) -> None:
    assert daemon.process is not None and daemon.process.poll() is None, "the daemon died"
    assert _exchange(daemon.policy_port, VALID) == VALID_ANSWER
    answer = _exchange(daemon.socketmap_port, encode(b"tlspolicy partner.example"), end=b",")
    assert answer == encode(b"OK encrypt")


_line = st.one_of(
    st.binary(max_size=80),
    st.builds(
        lambda k, v: k + b"=" + v,
        st.sampled_from(
            [
                b"request",
                b"protocol_state",
                b"client_address",
                b"recipient",
                b"sender",
                b"encryption_protocol",
                b"BAD NAME",
                b"sasl_username",
            ]
        ),
        st.binary(max_size=60),
    ),
)
_request = st.one_of(
    st.binary(max_size=2000),
    st.lists(_line, max_size=20).map(lambda lines: b"\n".join(lines) + b"\n\n"),
    st.just(b"request=smtpd_access_policy\nprotocol_state=RCPT\n\n"),  # fields missing
    st.just(b"request=smtpd_access_policy\n" + b"x=" + b"a" * 70_000),  # oversized
    st.just(b"request=smtpd_access_policy\nclient_address=\xff\xfe\x00\nrecipient=\x00@\xff\n\n"),
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=_request, half_close=st.booleans())
def test_policy_port_survives_anything(daemon: Policyd, data: bytes, half_close: bool) -> None:
    _exchange(daemon.policy_port, data, half_close=half_close, timeout=0.1)
    _assert_healthy(daemon)


@settings(max_examples=100, deadline=None)
@given(
    data=st.one_of(
        st.binary(max_size=300),
        st.builds(
            lambda n, b: str(n).encode() + b":" + b, st.integers(0, 99_999), st.binary(max_size=200)
        ),
    ),
    half_close=st.booleans(),
)
def test_socketmap_port_survives_anything(daemon: Policyd, data: bytes, half_close: bool) -> None:
    _exchange(daemon.socketmap_port, data, half_close=half_close, timeout=0.1)
    _assert_healthy(daemon)


def test_malformed_input_is_logged_and_the_connection_closed(daemon: Policyd) -> None:
    assert _exchange(daemon.policy_port, b"this is not a policy request\n\n") == b""
    assert "malformed input" in daemon.log_text()


def test_requests_before_a_bad_one_are_answered(daemon: Policyd) -> None:
    assert _exchange(daemon.policy_port, VALID + b"garbage\n\n" + VALID) == VALID_ANSWER


def test_a_connection_stays_open_across_reloads(daemon: Policyd) -> None:
    """Postfix keeps its policy connections; a settings change must not drop them."""
    installation = daemon.installation
    with socket.create_connection(("127.0.0.1", daemon.policy_port), timeout=5) as conn:
        conn.sendall(VALID)
        assert conn.recv(4096) == VALID_ANSWER
        installation.cli("allow", "add", "203.0.113.9")
        deadline = time.monotonic() + 3
        answer = VALID_ANSWER
        while answer == VALID_ANSWER and time.monotonic() < deadline:
            conn.sendall(VALID)
            answer = conn.recv(4096)
        assert answer == b"action=OK\n\n"
        installation.cli("allow", "delete", "203.0.113.9")
