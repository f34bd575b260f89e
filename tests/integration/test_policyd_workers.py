"""postwarden-policyd on all cores: worker processes, as the service user, on loopback.

Every worker answers and reloads in place (Postfix's connections stay open), a killed
worker is replaced while its peers answer on, the daemon's death takes its workers with it,
run-time state and metrics from all workers add up, a recipient one worker admits is known
to the others, and connections past the limit are closed while the rest are answered.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import pytest

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
"""
BLOCKED = (
    b"request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=203.0.113.9\n"
    b"sender=a@ext.example\nrecipient=bob@hosted.test\n\n"
)
BLOCKED_ANSWER = (
    b"action=554 5.7.1 Client host [203.0.113.9] is blocked by the policy of hosted.test\n\n"
)


@pytest.fixture
def installation(service_user: ServiceUser) -> Iterator[Installation]:
    base = make_traversable_dir("pw-workers-")
    inst = Installation(base, service_user)
    inst.write(SETTINGS)
    try:
        yield inst
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _started(installation: Installation, *options: str) -> Policyd:
    policyd = Policyd(installation, options=("--workers", "2", *options))
    policyd.start()
    _wait(lambda: len(policyd.worker_pids()) == 2, "two workers")
    return policyd


def _wait(condition: object, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _ask(conn: socket.socket, request: bytes = BLOCKED, end: bytes = b"\n\n") -> bytes:
    conn.sendall(request)
    answer = b""
    while not answer.endswith(end):
        chunk = conn.recv(4096)
        if not chunk:
            break
        answer += chunk
    return answer


def _connections(port: int, count: int) -> list[socket.socket]:
    return [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(count)]


def _pids_logging(policyd: Policyd, text: str) -> set[int]:
    pattern = re.compile(r"postwarden-policyd\[(\d+)\]: .*" + re.escape(text))
    return {int(m.group(1)) for m in pattern.finditer(policyd.log_text())}


def _blocks_recorded(installation: Installation) -> int:
    entries = installation.cli_json("block", "list", "--sort", "recent")["entries"]
    return int(entries[0]["blocks"])


def _metric(policyd: Policyd, line_start: str) -> float:
    url = f"http://127.0.0.1:{policyd.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    for line in text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_connections_spread_over_workers_that_all_reload_in_place(
    installation: Installation,
) -> None:
    policyd = _started(installation)
    try:
        conns = _connections(policyd.policy_port, 6)
        for conn in conns:
            assert _ask(conn) == BLOCKED_ANSWER
        workers = set(policyd.worker_pids())
        assert _pids_logging(policyd, "rule=blocked-ip") == workers  # each worker answered
        installation.cli("allow", "add", "203.0.113.9")
        for conn in conns:  # the same connections: each worker reloaded in place
            _wait(lambda c=conn: _ask(c) == b"action=OK\n\n", "the change in every worker")
        for conn in conns:
            conn.close()
        # what every worker learnt is in the one state database, and in the summed metrics
        # (the requests before each worker's reload were blocked too)
        decisions = 'postwarden_policy_decisions_total{domain="hosted.test",rule="blocked-ip"}'
        blocked = _metric(policyd, decisions)
        assert blocked >= 6
        _wait(lambda: _blocks_recorded(installation) == blocked, "every block recorded")
    finally:
        policyd.stop()


def test_a_killed_worker_is_replaced_while_the_other_answers(installation: Installation) -> None:
    policyd = _started(installation)
    try:
        conns = _connections(policyd.policy_port, 4)
        for conn in conns:
            assert _ask(conn) == BLOCKED_ANSWER
        victim, survivor = policyd.worker_pids()
        os.kill(victim, signal.SIGKILL)
        answered = 0
        for conn in conns:  # the survivor's connections answer on; the victim's are closed
            with contextlib.suppress(OSError):
                answered += _ask(conn) == BLOCKED_ANSWER
        assert answered == 2
        _wait(  # (a dead worker stays listed until the parent reaps it)
            lambda: victim not in policyd.worker_pids() and len(policyd.worker_pids()) == 2,
            "a replacement worker",
        )
        assert survivor in policyd.worker_pids()
        assert "exited unexpectedly (signal SIGKILL); restarting it" in policyd.log_text()
        fresh = _connections(policyd.policy_port, 4)
        for conn in fresh:
            assert _ask(conn) == BLOCKED_ANSWER
            conn.close()
        for conn in conns:
            conn.close()
    finally:
        policyd.stop()


def test_the_workers_die_with_the_daemon(installation: Installation) -> None:
    policyd = _started(installation)
    workers = policyd.worker_pids()
    assert policyd.process is not None
    os.kill(policyd.process.pid, signal.SIGKILL)  # the parent alone, as a crash would
    policyd.process.wait(10)
    _wait(lambda: not any(os.path.exists(f"/proc/{pid}") for pid in workers), "workers gone")
    policyd.process = None
    policyd.start()  # and the same addresses can be served again at once
    try:
        with socket.create_connection(("127.0.0.1", policyd.policy_port), timeout=5) as conn:
            assert _ask(conn) == BLOCKED_ANSWER
    finally:
        policyd.stop()


def test_recipients_admitted_by_any_worker_are_accepted_by_rcptok(
    installation: Installation,
) -> None:
    """Policy requests reach both workers; rcptok (worker 0) accepts every admitted one."""
    installation.write(
        SETTINGS + "    inbound_routing:\n"
        "      - {name: arch, route: archive, condition: all, unknown_recipients: true}\n"
        'routes:\n  archive: {host: "[192.0.2.10]"}\n'
    )
    policyd = _started(installation)
    try:
        policy = _connections(policyd.policy_port, 6)  # spread over both workers
        recipients = [f"nobody{i}@hosted.test" for i in range(12)]
        for i, recipient in enumerate(recipients):
            request = (
                b"request=smtpd_access_policy\nprotocol_state=RCPT\n"
                b"client_address=198.51.100.9\nsender=a@ext.example\n"
                b"recipient=" + recipient.encode() + b"\n\n"
            )
            assert _ask(policy[i % 6], request) == b"action=DUNNO\n\n"
        assert len(_pids_logging(policyd, "to=<nobody")) == 2  # both workers admitted some
        maps = _connections(policyd.socketmap_port, 3)
        for i, recipient in enumerate(recipients):  # each admission is good for one lookup
            lookup = encode(b"rcptok " + recipient.encode())
            assert _ask(maps[i % 3], lookup, end=b",") == encode(b"OK OK"), recipient
            assert _ask(maps[i % 3], lookup, end=b",") == encode(b"NOTFOUND ")
        unknown = encode(b"unknown nobody3@hosted.test")  # what the milter asks
        assert _ask(maps[0], unknown, end=b",") == encode(b"OK unknown")
        for conn in policy + maps:
            conn.close()
    finally:
        policyd.stop()


def test_connections_past_the_limit_are_closed_and_counted(installation: Installation) -> None:
    policyd = _started(installation, "--max-connections", "6")
    try:
        held = _connections(policyd.policy_port, 6)
        for conn in held:
            assert _ask(conn) == BLOCKED_ANSWER
        excess = _connections(policyd.policy_port, 20)
        for conn in excess:  # closed unanswered
            conn.sendall(BLOCKED)
            with contextlib.suppress(ConnectionResetError):
                assert conn.recv(4096) == b""
            conn.close()
        assert _ask(held[0]) == BLOCKED_ANSWER  # the others are answered as before
        assert "connection limit 6 reached" in policyd.log_text()
        assert _metric(policyd, "postwarden_connections_refused_total") == 20.0
        held.pop().close()
        _wait(lambda: _room_for_one(policyd.policy_port), "room for a new connection")
        for conn in held:
            conn.close()
    finally:
        policyd.stop()


def _room_for_one(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        try:
            return _ask(conn) == BLOCKED_ANSWER
        except ConnectionResetError:
            return False


def test_partial_requests_cannot_hold_more_than_the_limit(installation: Installation) -> None:
    """Issue 9: 2,000 connections with 60 KB partial requests each grew policyd by 120 MB."""
    policyd = _started(installation, "--max-connections", "50")
    try:
        conns = _connections(policyd.policy_port, 200)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.sendall(b"request=smtpd_access_policy\nx=" + b"a" * 60_000)
        time.sleep(0.5)
        closed = 0
        for conn in conns:
            conn.setblocking(False)
            try:
                closed += conn.recv(1) == b""
            except BlockingIOError:
                pass  # still open: one of the 50
            except OSError:
                closed += 1
            conn.close()
        assert closed >= 150
        _wait(lambda: _room_for_one(policyd.policy_port), "answers again")
    finally:
        policyd.stop()


def test_a_worker_count_that_is_not_positive_is_refused(installation: Installation) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "postwarden.policyd.main", "--settings",
         str(installation.settings), "--workers", "0"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--workers: '0' is not a positive whole number" in done.stderr
