"""Settings store: load + compile of 10,000 allowed + 10,000 blocked entries, and lookups.

Targets (issue #2): load+compile <= 2 s, lookup <= 20 us per IP.
"""

from __future__ import annotations

import gc
import ipaddress
import random
import resource
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

from postwarden.decision import Facts, decide_recipient
from postwarden.settings.load import dump, load_text
from postwarden.settings.model import DomainBlock, Settings
from postwarden.settings.schema import IpEntry
from postwarden.settings.snapshot import compile_settings
from postwarden.util.iptable import parse_range

ENTRIES = 10_000


def _entries(rng: random.Random, count: int, v6_share: float) -> tuple[IpEntry, ...]:
    result = []
    for i in range(count):
        if rng.random() < v6_share:
            text = f"2001:db8:{rng.randrange(65536):x}:{rng.randrange(65536):x}::/64"
        elif i % 3 == 0:
            text = f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}.0/24"
        else:
            text = f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}." + str(
                rng.randrange(256)
            )
        result.append(IpEntry(parse_range(text), note=f"entry {i}"))
    return tuple(result)


def _probes(rng: random.Random, block: DomainBlock, count: int) -> list[str]:
    """A mix: a third hits the allowed list, a third the blocked list, a third misses."""
    probes = []
    for i in range(count):
        pool = (block.allowed_ips, block.blocked_ips, None)[i % 3]
        if pool is None:
            probes.append(f"{rng.randrange(224, 240)}.{rng.randrange(256)}.0.1")
        else:
            entry = rng.choice(pool).range
            value = rng.randrange(entry.first, entry.last + 1)
            address = (
                ipaddress.IPv6Address(value)
                if entry.version == 6
                else (ipaddress.IPv4Address(value))
            )
            probes.append(str(address))
    return probes


def main() -> None:
    rng = random.Random(25)
    block = DomainBlock(
        allowed_ips=_entries(rng, ENTRIES, 0.2), blocked_ips=_entries(rng, ENTRIES, 0.2)
    )
    settings = Settings(primary_domain="example.com", domains={"example.com": block})
    text = dump(settings)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "settings.yaml"
        path.write_text(text)
        timings = []
        for _ in range(5):
            gc.collect()
            start = time.perf_counter()
            loaded = load_text(path.read_bytes(), str(path))
            snapshot = compile_settings(loaded.settings, digest=loaded.digest)
            timings.append(time.perf_counter() - start)
    print(f"file: {len(text) / 1e6:.2f} MB, {2 * ENTRIES:,} entries (20% IPv6, notes on all)")
    print(
        f"load + validate + compile: median {statistics.median(timings):.3f} s,"
        f" best {min(timings):.3f} s (5 runs; target <= 2 s)"
    )

    policy = snapshot.policy_for("example.com")
    assert policy is not None
    probes = _probes(rng, block, 30_000)
    start = time.perf_counter()
    for probe in probes:
        policy.allowed.lookup_text(probe)
        policy.blocked.lookup_text(probe)
    per_ip = (time.perf_counter() - start) / len(probes)
    print(
        f"lookup (allowed + blocked list, text address): {per_ip * 1e6:.2f} us per IP"
        f" ({len(probes):,} probes; target <= 20 us)"
    )

    facts = [Facts(ip, "a@sender.example", "bob@example.com") for ip in probes]
    start = time.perf_counter()
    for fact in facts:
        decide_recipient(snapshot, fact)
    per_decision = (time.perf_counter() - start) / len(facts)
    print(f"full decision (decide_recipient): {per_decision * 1e6:.2f} us per recipient")

    gc.collect()
    tracemalloc.start()
    again = compile_settings(loaded.settings)
    size, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del again
    print(
        f"memory: compiled tables {size / 1e6:.1f} MB; process max RSS"
        f" {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
    )
