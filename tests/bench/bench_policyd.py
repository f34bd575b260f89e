"""postwarden-policyd under load: requests/s, latency and CPU per request, memory.

A real daemon process with 10,000 allowed + 10,000 blocked entries answers policy requests
from 8 and from 100 persistent connections, each sending one request at a time as Postfix's
smtpd does. The mix: a third allowed hits, a third blocked hits, a third misses; a fifth of
all clients IPv6. The daemon logs every decision (to /dev/null), as in production.

Targets (issue #3): >= 10,000 requests/s with p99 < 2 ms from 8 connections.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from postwarden.settings.load import dump
from postwarden.settings.model import DomainBlock, Settings
from tests.bench.bench_settings import ENTRIES, _entries, _probes

DURATION = 5.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


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


async def _client(
    port: int, requests: list[bytes], deadline: float, latencies: list[float]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    index = random.randrange(len(requests))
    while time.perf_counter() < deadline:
        request = requests[index % len(requests)]
        index += 1
        start = time.perf_counter()
        writer.write(request)
        await reader.readuntil(b"\n\n")
        latencies.append(time.perf_counter() - start)
    writer.close()
    await writer.wait_closed()


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _wait_for_port(port: int) -> None:
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)


def _run_load(port: int, pid: int, requests: list[bytes], connections: int) -> None:
    latencies: list[float] = []

    async def load() -> None:
        deadline = time.perf_counter() + DURATION
        await asyncio.gather(
            *(_client(port, requests, deadline, latencies) for _ in range(connections))
        )

    cpu_before = _cpu_seconds(pid)
    start = time.perf_counter()
    asyncio.run(load())
    elapsed = time.perf_counter() - start
    cpu = _cpu_seconds(pid) - cpu_before
    latencies.sort()
    count = len(latencies)
    print(
        f"{connections:>3} connections: {count / elapsed:,.0f} requests/s,"
        f" p50 {statistics.median(latencies) * 1e3:.2f} ms,"
        f" p99 {latencies[int(count * 0.99)] * 1e3:.2f} ms,"
        f" daemon CPU {cpu / count * 1e6:.0f} us/request ({count:,} requests in {elapsed:.1f} s)"
    )


def main() -> None:
    rng = random.Random(3)
    block = DomainBlock(
        allowed_ips=_entries(rng, ENTRIES, 0.2), blocked_ips=_entries(rng, ENTRIES, 0.2)
    )
    settings = Settings(primary_domain="example.com", domains={"example.com": block})
    requests = _requests(_probes(rng, block, 30_000))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "settings.yaml"
        path.write_text(dump(settings))
        port, socketmap_port = _free_port(), _free_port()
        daemon = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "postwarden.policyd.main",
                "--settings",
                str(path),
                "--state-dir",
                str(Path(tmp) / "state"),
                "--policy",
                f"inet:127.0.0.1:{port}",
                "--socketmap",
                f"inet:127.0.0.1:{socketmap_port}",
                "--tls-security-level",
                "may",
                "--metrics",
                "none",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_for_port(port)
            print(
                f"daemon ready; resident memory {_rss_mb(daemon.pid):.0f} MB"
                f" with {2 * ENTRIES:,} entries"
            )
            for connections in (8, 100):
                _run_load(port, daemon.pid, requests, connections)
            print(f"resident memory after load: {_rss_mb(daemon.pid):.0f} MB")
        finally:
            daemon.terminate()
            daemon.wait(10)
