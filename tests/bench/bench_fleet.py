"""The PostgreSQL store: how fast a change reaches every node, and policyd's speed on it.

Propagation: a private PostgreSQL cluster and three ``postwarden-policyd`` nodes, each with
``--store postgresql://...`` and its own state directory. Each of :data:`EDITS` edits blocks
one more address (through the store, as ``postwarden block add`` does); from the commit on,
every node is asked about that address every few milliseconds, on connections spread over
all its workers, until every one refuses it. The time from the commit to the last refusal,
over all edits and nodes, gives p50 and p99 (target: p99 <= 2 s).

Throughput: the same policyd (10,000 allowed + 10,000 blocked entries, the request mix of
bench_policyd, a third of the requests blocked and so recorded) with the file store and with
the PostgreSQL store, in alternating rounds, from 8 connections. Nothing on the request path
calls the database, so the two should be equal within noise (target: within 10 %).
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from postwarden.admin.entries import new_ip_entries
from postwarden.settings.load import dump
from postwarden.settings.model import BLOCKED_IP, DomainBlock, Settings
from postwarden.store import AuditNote
from postwarden.store.pg.store import PgStore
from tests.bench.bench_policyd import _free_port, _measure, _requests
from tests.bench.bench_settings import ENTRIES, _entries, _probes
from tests.harness import ensure_service_user, wait_for_port
from tests.harness.postgres import PostgresCluster
from tests.harness.proc import cpu_seconds

EDITS = 40
CONNECTIONS = 4  # per node, spread over its workers
NODES = 3
ROUNDS = 5
LOAD_SECONDS = 4.0
NOTE = AuditNote("bench", "command", "bench")


def _policyd(argv: list[str], tmp: Path, name: str) -> tuple[subprocess.Popen[bytes], int]:
    """policyd started by root, as systemd would: it drops to the service user itself."""
    port = _free_port()
    state = tmp / name
    state.mkdir(exist_ok=True)
    user = ensure_service_user()
    os.chown(state, user.uid, user.gid)
    daemon = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "postwarden.policyd.main",
            *argv,
            "--state-dir",
            str(tmp / name),
            "--policy",
            f"inet:127.0.0.1:{port}",
            "--socketmap",
            f"inet:127.0.0.1:{_free_port()}",
            "--tls-security-level",
            "may",
            "--metrics",
            "none",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={"PATH": "/usr/bin:/bin", "POSTWARDEN_NODE": name},
    )
    wait_for_port("127.0.0.1", port, timeout=60, proc=daemon)
    return daemon, port


def _request(ip: str) -> bytes:
    return (
        "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n"
        f"client_address={ip}\nclient_name=unknown\nhelo_name=h.example\n"
        "sender=a@sender.example\nrecipient=b@example.com\n\n"
    ).encode()


async def _until_refused(port: int, ip: str, since: float) -> float:
    """Seconds from *since* until every worker of the node refuses *ip*.

    :data:`CONNECTIONS` connections opened together are spread over the daemon's workers;
    the node counts as done when the last of them refuses.
    """

    async def one() -> float:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while True:
                writer.write(_request(ip))
                answer = await reader.readuntil(b"\n\n")
                if answer.startswith(b"action=5"):
                    return time.perf_counter() - since
                await asyncio.sleep(0.002)
        finally:
            writer.close()

    return max(await asyncio.gather(*(one() for _ in range(CONNECTIONS))))


def _propagation(store: PgStore, ports: list[int]) -> list[float]:
    delays: list[float] = []
    for index in range(EDITS):
        ip = f"192.0.2.{index + 1}"

        def block(settings: Settings, ip: str = ip) -> Settings:
            own = settings.domains[settings.primary_domain] or DomainBlock()
            added = (*own.blocked_ips, *new_ip_entries([ip], BLOCKED_IP, ""))
            domains = {**settings.domains, settings.primary_domain: replace(own, blocked_ips=added)}
            return replace(settings, domains=domains)

        store.edit(block, lambda: NOTE)
        since = time.perf_counter()

        async def watch(ip: str = ip, since: float = since) -> list[float]:
            return list(await asyncio.gather(*(_until_refused(p, ip, since) for p in ports)))

        delays.extend(asyncio.run(watch()))
        time.sleep(random.uniform(0.05, 0.3))
    return delays


def _throughput(pid: int, port: int, requests: list[bytes]) -> tuple[float, float]:
    """Requests/s from 8 connections (bench_policyd's load generator), and the daemon's
    CPU per request in microseconds (its workers included; the database's is not)."""
    cpu = cpu_seconds(pid)
    count, elapsed, _p50, _p99 = _measure(port, requests, 8, None)
    return count / elapsed, (cpu_seconds(pid) - cpu) / count * 1e6


def _span(values: list[float]) -> str:
    return f"{min(values):,.0f}-{max(values):,.0f}"


def main() -> None:
    rng = random.Random(3)
    big = DomainBlock(
        allowed_ips=_entries(rng, ENTRIES, 0.2), blocked_ips=_entries(rng, ENTRIES, 0.2)
    )
    settings = Settings(primary_domain="example.com", domains={"example.com": big})
    requests = _requests(_probes(rng, big, 30_000))
    cluster = PostgresCluster()
    daemons: list[subprocess.Popen[bytes]] = []
    try:
        cluster.init()
        cluster.start()
        cluster.create_roles()
        url = cluster.url(cluster.new_database())
        with tempfile.TemporaryDirectory() as name:
            tmp = Path(name)
            tmp.chmod(0o755)  # the service user reaches its state directories in it
            store = PgStore(url, tmp / "cli")
            store.initialize()
            small = Settings(primary_domain="example.com", domains={"example.com": DomainBlock()})
            store.create(small, NOTE)
            ports = []
            for node in range(1, NODES + 1):
                daemon, port = _policyd(["--store", url], tmp, f"node{node}")
                daemons.append(daemon)
                ports.append(port)
            delays = sorted(_propagation(store, ports))
            p99 = delays[min(len(delays) - 1, int(len(delays) * 0.99))]
            print(
                f"propagation to {NODES} nodes over {EDITS} edits: p50"
                f" {statistics.median(delays) * 1e3:.0f} ms, p99 {p99 * 1e3:.0f} ms,"
                f" max {delays[-1] * 1e3:.0f} ms (commit to every worker refusing)"
            )
            for daemon in daemons:
                daemon.terminate()
                daemon.wait(10)
            daemons.clear()
            store.edit(lambda _old: settings, lambda: NOTE)
            path = tmp / "settings.yaml"
            path.write_text(dump(settings))
            rates: dict[str, list[float]] = {"file": [], "postgresql": []}
            cpu: dict[str, list[float]] = {"file": [], "postgresql": []}
            for _round in range(ROUNDS):
                for kind, argv in (
                    ("file", ["--settings", str(path)]),
                    ("postgresql", ["--store", url]),
                ):
                    daemon, port = _policyd(argv, tmp, f"tp-{kind}")
                    daemons.append(daemon)
                    rate, per_request = _throughput(daemon.pid, port, requests)
                    rates[kind].append(rate)
                    cpu[kind].append(per_request)
                    daemon.terminate()
                    daemon.wait(10)
                    daemons.pop()
            file_rate = statistics.median(rates["file"])
            pg_rate = statistics.median(rates["postgresql"])
            print(
                f"policyd, 8 connections, median of {ROUNDS} alternating rounds: file store"
                f" {file_rate:,.0f} requests/s ({_span(rates['file'])}), PostgreSQL store"
                f" {pg_rate:,.0f} requests/s ({_span(rates['postgresql'])}):"
                f" {(pg_rate / file_rate - 1) * 100:+.1f} %"
            )
            file_cpu, pg_cpu = statistics.median(cpu["file"]), statistics.median(cpu["postgresql"])
            print(
                f"policyd CPU per request (workers included, not the database's): file store"
                f" {file_cpu:.0f} us, PostgreSQL store {pg_cpu:.0f} us"
                f" ({(pg_cpu / file_cpu - 1) * 100:+.1f} %)"
            )
    finally:
        for daemon in daemons:
            daemon.terminate()
            daemon.wait(10)
        cluster.close()
