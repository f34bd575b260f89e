"""postwarden-policyd under load, and through Postfix against Postfix's own ``cidr:`` tables.

Protocol level: the daemon as installed (one worker per core) with 10,000 allowed +
10,000 blocked entries answers policy requests over persistent connections, each sending
one request at a time as Postfix's smtpd does (every connection answered once before the
clock starts: Postfix keeps these connections for minutes, so the steady state counts, not
the accept queue of a cold start); the mix is a third allowed hits, a third
blocked hits, a third misses, a fifth of all clients IPv6; every decision is logged (to
/dev/null), as in production. The load comes from a separate process on the same two
cores, taking as little of them as it can: ``policy_load.c``, built with the system's C
compiler (a few microseconds of CPU per request; without a compiler the same loop in
Python, about 15):

- 8 connections, closed loop: each sends its next request as soon as the answer is in;
  the throughput is the daemon's capacity, the latencies what a request sees at it;
- 100 connections (Postfix's default smtpd process limit), closed loop: the same, with
  100 requests always waiting — by Little's law each waits 100 / throughput on average,
  so this shows capacity, not the latency of a busy MX;
- 100 connections, open loop at each rate of :data:`OFFERED` requests/s in all: each
  connection sends on its own schedule whether or not the daemon keeps up, latency counted
  from the scheduled time (no coordinated omission): what 100 smtpd processes see when
  their RCPTs arrive at that rate.

SMTP level: smtp-source through one private Postfix, 1 KB messages to a discard
transport, the recipient check done by the policy daemon (``check_policy_service``) or
by the same 20,000 entries as ``cidr:`` tables (``check_client_access``), and by nothing
for reference; rounds interleaved, median and range. The figure that counts is policyd /
cidr in the same run.

Targets (issue #14): >= 25,000 requests/s with p99 <= 1 ms from 8 connections and
p99 <= 2 ms from 100; at the SMTP level >= 0.95 x the cidr tables.
"""

from __future__ import annotations

import atexit
import functools
import heapq
import multiprocessing
import os
import random
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from postwarden.settings.load import dump
from postwarden.settings.model import DomainBlock, Settings
from postwarden.settings.schema import IpEntry
from postwarden.util.iptable import parse_range
from tests.bench.anchors import cidr_table
from tests.bench.bench_settings import ENTRIES, _entries, _probes
from tests.harness import (
    PostfixInstance,
    ensure_service_user,
    spawn_as_service_user,
    wait_for_port,
)
from tests.harness.proc import cpu_seconds, family, resident_mb

DURATION = float(os.environ.get("BENCH_SECONDS", "5"))
OFFERED = (10_000, 20_000, 25_000)  # open-loop rates from 100 connections
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
SMTP_MESSAGES = int(os.environ.get("BENCH_SMTP_MESSAGES", "3000"))
SESSIONS = 10


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _requests(probes: list[str]) -> list[bytes]:
    return [
        (
            "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n"
            f"client_address={ip}\nclient_name=unknown\nreverse_client_name=unknown\n"
            "helo_name=mx.sender.example\nsender=alice@sender.example\n"
            f"recipient=bob{i}@example.com\nrecipient_count=0\nqueue_id=\ninstance=1.2.3\n"
            "size=0\netrn_domain=\nstress=\nsasl_method=\nsasl_username=\nsasl_sender=\n"
            "ccert_subject=\nccert_issuer=\nccert_fingerprint=\nencryption_protocol=\n"
            "encryption_cipher=\nencryption_keysize=0\nserver_address=127.0.0.1\n"
            "server_port=25\npolicy_context=\n\n"
        ).encode()
        for i, ip in enumerate(probes)
    ]


def _load(
    port: int, requests: list[bytes], connections: int, rate: float | None
) -> tuple[list[float], float]:
    """Run the load for DURATION seconds; the latencies and the elapsed time.

    Every connection is first answered once, unmeasured: Postfix keeps its policy
    connections open for minutes, so the steady state counts, not a cold accept queue.

    *rate* None: closed loop. Otherwise each connection sends every ``connections / rate``
    seconds on a fixed schedule (a heap of due times). A request the daemon made late (the
    previous answer came after it was due) is sent at once and its latency runs from when
    it was due; one sent late only because this loop woke late (epoll waits whole
    milliseconds) counts from when it was sent.
    """
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(connections)]
    for sock in socks:  # warm-up, not measured: every connection accepted and answered once
        sock.sendall(requests[0])
    for sock in socks:
        answer = b""
        while not answer.endswith(b"\n\n"):
            answer += sock.recv(4096)
    selector = selectors.DefaultSelector()
    interval = connections / rate if rate else 0.0
    due = [0.0] * connections  # when the request in flight was due (or sent)
    index = [random.randrange(len(requests)) for _ in range(connections)]
    latencies: list[float] = []
    record = latencies.append
    clock = time.perf_counter
    start = clock()
    deadline = start + DURATION
    schedule: list[tuple[float, int]] = []  # (due, connection) of idle connections
    for number, sock in enumerate(socks):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        selector.register(sock, selectors.EVENT_READ, number)
        heapq.heappush(schedule, (start + number * interval / connections, number))

    def send(number: int, when: float) -> None:
        socks[number].send(requests[index[number] % len(requests)])
        index[number] += 1
        due[number] = when

    while True:
        now = clock()
        if now >= deadline:
            break
        while schedule and schedule[0][0] <= now:
            _, number = heapq.heappop(schedule)
            send(number, now)
        timeout = max(0.0, schedule[0][0] - now) if schedule else 0.05
        for key, _ in selector.select(timeout):
            number = key.data
            answer = socks[number].recv(4096)
            while not answer.endswith(b"\n\n"):  # a reply split in two: rare on loopback
                answer += socks[number].recv(4096)
            now = clock()
            record(now - due[number])
            if not rate:
                send(number, now)
            elif due[number] + interval <= now:  # the daemon made this one late
                send(number, due[number] + interval)
            else:
                heapq.heappush(schedule, (due[number] + interval, number))
    elapsed = clock() - start
    for sock in socks:
        sock.close()
    return latencies, elapsed


def _in_child(port: int, requests: list[bytes], connections: int, rate: float | None) -> tuple:
    with multiprocessing.get_context("fork").Pool(1) as pool:
        return pool.apply(_load, (port, requests, connections, rate))


@functools.cache
def _private_dir() -> Path:
    """A directory for the load generator and its requests, removed at exit."""
    path = Path(tempfile.mkdtemp(prefix="pw-bench-load-"))
    atexit.register(shutil.rmtree, path, True)
    return path


@functools.cache
def _c_load_generator() -> Path | None:
    """policy_load.c built with the system's C compiler; None without one."""
    compiler = shutil.which("cc")
    if compiler is None:
        return None
    binary = _private_dir() / "policy_load"
    source = Path(__file__).with_name("policy_load.c")
    done = subprocess.run([compiler, "-O2", "-o", str(binary), str(source)], check=False)
    return binary if done.returncode == 0 else None


@functools.cache
def _requests_file(requests: tuple[bytes, ...]) -> Path:
    path = _private_dir() / "requests"
    path.write_bytes(b"".join(requests))
    return path


def _measure(
    port: int, requests: list[bytes], connections: int, rate: float | None
) -> tuple[int, float, float, float]:
    """(requests answered, seconds, p50 s, p99 s), from the C load generator if there is
    a compiler (about 3 us of CPU a request), else from the Python one (about 15 us)."""
    binary = _c_load_generator()
    if binary is None:
        latencies, elapsed = _in_child(port, requests, connections, rate)
        latencies.sort()
        count = len(latencies)
        return count, elapsed, statistics.median(latencies), latencies[int(count * 0.99)]
    out = subprocess.run(
        [str(binary), "127.0.0.1", str(port), str(connections), str(DURATION),
         str(rate or 0), str(_requests_file(tuple(requests)))],
        check=True, capture_output=True, text=True, timeout=DURATION + 60,
    ).stdout.split()  # fmt: skip
    return int(out[0]), float(out[1]), float(out[2]) / 1e6, float(out[3]) / 1e6


def _settle(pid: int, timeout: float = 30.0) -> None:
    """Wait until the daemon is quiet (under 2 % of a core over half a second): each load
    starts from a daemon that has written what the last one left queued."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = cpu_seconds(pid)
        time.sleep(0.5)
        if cpu_seconds(pid) - before < 0.01:
            return


def _report(label: str, pid: int, requests: list[bytes], port: int, rate: float | None) -> None:
    _settle(pid)
    cpu_before = cpu_seconds(pid)
    count, elapsed, p50, p99 = _measure(port, requests, int(label.split(maxsplit=1)[0]), rate)
    cpu = cpu_seconds(pid) - cpu_before
    print(
        f"{label}: {count / elapsed:,.0f} requests/s, p50 {p50 * 1e3:.2f} ms,"
        f" p99 {p99 * 1e3:.2f} ms, daemon CPU {cpu / count * 1e6:.0f} us/request"
        f" ({count:,} in {elapsed:.1f} s)"
    )


def _block(rng: random.Random) -> DomainBlock:
    return DomainBlock(
        allowed_ips=_entries(rng, ENTRIES, 0.2), blocked_ips=_entries(rng, ENTRIES, 0.2)
    )


@contextmanager
def _policyd(settings: Settings, state: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """policyd as the service user, as in production (*state* is made the user's)."""
    path = state.parent / "settings.yaml"
    path.write_text(dump(settings))
    state.parent.chmod(0o755)  # a TemporaryDirectory is root's alone
    user = ensure_service_user()
    state.mkdir(exist_ok=True)
    os.chown(state, user.uid, user.gid)
    port, socketmap_port = _free_port(), _free_port()
    daemon = spawn_as_service_user(
        [sys.executable, "-m", "postwarden.policyd.main", "--settings", str(path),
         "--state-dir", str(state), "--policy", f"inet:127.0.0.1:{port}",
         "--socketmap", f"inet:127.0.0.1:{socketmap_port}", "--tls-security-level", "may",
         "--metrics", "none"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_port("127.0.0.1", port, timeout=60, proc=daemon)
        yield daemon, port
    finally:
        daemon.terminate()
        daemon.wait(15)


@contextmanager
def running_policyd(settings: Settings) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """policyd on *settings* in a private state directory, once all its workers run."""
    with (
        tempfile.TemporaryDirectory() as tmp,
        _policyd(settings, Path(tmp) / "state") as (
            daemon,
            port,
        ),
    ):
        expected = len(os.sched_getaffinity(0))  # one worker per core by default
        deadline = time.monotonic() + 30
        while len(family(daemon.pid)) - 1 < expected and time.monotonic() < deadline:
            time.sleep(0.05)
        yield daemon, port


def protocol_level() -> None:
    rng = random.Random(3)
    block = _block(rng)
    settings = Settings(primary_domain="example.com", domains={"example.com": block})
    requests = _requests(_probes(rng, block, 30_000))
    with running_policyd(settings) as (daemon, port):
        workers = len(family(daemon.pid)) - 1
        print(
            f"daemon ready: {workers} workers, {2 * ENTRIES:,} entries, resident memory"
            f" {resident_mb(daemon.pid):.0f} MB (proportional set size, all processes);"
            f" load average {os.getloadavg()[0]:.2f}"
        )
        _report("  8 connections, closed loop", daemon.pid, requests, port, None)
        _report("100 connections, closed loop", daemon.pid, requests, port, None)
        for rate in OFFERED:
            label = f"100 connections, open loop at {rate:,}/s"
            _report(label, daemon.pid, requests, port, rate)
        print(f"resident memory after load: {resident_mb(daemon.pid):.0f} MB")


def _smtp_send(port: int, count: int) -> float:
    start = time.perf_counter()
    subprocess.run(
        ["smtp-source", "-s", str(SESSIONS), "-m", str(count), "-l", "1024",
         "-f", "alice@sender.example", "-t", "bob@example.com", "-M", "bench.client",
         f"127.0.0.1:{port}"],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=900,
    )  # fmt: skip
    return count / (time.perf_counter() - start)


def smtp_level() -> None:
    rng = random.Random(3)
    block = _block(rng)
    settings = Settings(
        primary_domain="example.com",
        domains={"example.com": block},
        trusted_networks=(IpEntry(parse_range("192.0.2.0/24")),),  # 127.0.0.1 is judged
    )
    with ExitStack() as stack:
        tmp = Path(tempfile.mkdtemp(prefix="pw-bench-policy-"))
        stack.callback(shutil.rmtree, tmp, True)
        _daemon, port = stack.enter_context(_policyd(settings, tmp / "state"))
        postfix = PostfixInstance(relay_domains=["example.com"], routes={"example.com": "discard:"})
        stack.callback(postfix.close)
        table = cidr_table(
            tmp / "lists.cidr",
            (e.text for e in block.allowed_ips),
            (e.text for e in block.blocked_ips),
        )
        postfix.start()
        policy = f"{{ inet:127.0.0.1:{port}, timeout=10s, default_action=DEFER_IF_PERMIT }}"
        checks = {
            "no check (reference)": "",
            "postwarden-policyd": f"check_policy_service {policy}",
            "Postfix cidr: tables": f"check_client_access {table}",
        }
        rates: dict[str, list[float]] = {label: [] for label in checks}
        labels = list(checks)
        for round_number in range(ROUNDS):
            shift = round_number % len(labels)
            for label in labels[shift:] + labels[:shift]:
                postfix.postconf({"smtpd_recipient_restrictions": checks[label]})
                _smtp_send(postfix.mx_port, 200)  # warm up: processes, connections, tables
                rates[label].append(_smtp_send(postfix.mx_port, SMTP_MESSAGES))
            print(f"  round {round_number + 1} done", file=sys.stderr)
        assert "blocked" not in postfix.log_text()
    for label, values in rates.items():
        print(
            f"{label:>28}: {statistics.median(values):6.0f} messages/s"
            f" (range {min(values):.0f}-{max(values):.0f})"
        )
    ratio = statistics.median(rates["postwarden-policyd"]) / statistics.median(
        rates["Postfix cidr: tables"]
    )
    print(f"policyd / cidr tables: {ratio:.2f}x (target >= 0.95x)")


def main() -> None:
    print(f"protocol level, {DURATION:.0f} s per load, one request at a time per connection")
    protocol_level()
    print(
        f"SMTP level: {ROUNDS} interleaved rounds of {SMTP_MESSAGES} messages of 1 KB,"
        f" {SESSIONS} sessions, smtp-source -> Postfix (recipient check) -> discard"
    )
    smtp_level()
