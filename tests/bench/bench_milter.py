"""postwarden-milter through a real Postfix: messages/s with the milter against without it.

One private Postfix instance (tests/harness), smtp-source sending 10 KB messages over 10
parallel sessions, everything relayed on to an smtp-sink. Three runs in the same process:

- baseline: the same Postfix with no milter;
- outgoing: the milter signing every message (RSA-2048, From in a hosted domain, the
  client trusted);
- inbound: the milter running 20 regex rules (none matching) on every message from an
  untrusted client.

Target (issue #4): with signing or 20 rules on, throughput >= 0.5 x the same Postfix without
a milter. Needs root (Postfix), like the integration tests.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator

from postwarden.dkim import keys
from postwarden.dkim.store import DkimKeys
from postwarden.settings.state import StateDB
from tests.harness import PostfixInstance, SmtpSink, ensure_service_user
from tests.harness.fixtures import make_traversable_dir
from tests.integration.daemons import Installation, MilterDaemon, wire

MESSAGES = 2000
SESSIONS = 10
SIZE = 10 * 1024
RULES = "\n".join(
    f"      - {{name: r{i}, field: {('subject', 'body', 'from', 'header:X-Mailer')[i % 4]},"
    f" pattern: '(?i)never-matches-{i}\\s+\\w+'}}"
    for i in range(20)
)


def _settings(trusted: str) -> str:
    return (
        "version: 1\nprimary_domain: hosted.test\n"
        f"trusted_networks: [{trusted}]\n"
        "domains:\n  hosted.test:\n    spam_rules:\n" + RULES + "\n"
    )


def _activate_key(inst: Installation) -> None:
    """An RSA-2048 key for hosted.test, active without a DNS check (signing only)."""
    with StateDB.open(inst.state_dir) as db:
        key = keys.generate(keys.Algorithm.RSA, 2048)
        keys.write_key(inst.state_dir, "hosted.test", "bench", key)
        store = DkimKeys(db)
        store.add("hosted.test", "bench", keys.Algorithm.RSA, 2048)
        store.activate("hosted.test", "bench", "benchmark")
    subprocess.run(
        ["chown", "-R", f"{inst.user.uid}:{inst.user.gid}", str(inst.state_dir)], check=True
    )


def _send(port: int, sender: str, recipient: str) -> float:
    start = time.perf_counter()
    subprocess.run(
        [
            "smtp-source",
            "-c",
            "-s",
            str(SESSIONS),
            "-m",
            str(MESSAGES),
            "-l",
            str(SIZE),
            "-f",
            sender,
            "-t",
            recipient,
            "-M",
            "bench.client",
            f"127.0.0.1:{port}",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=600,
    )
    return MESSAGES / (time.perf_counter() - start)


@contextlib.contextmanager
def _setup(trusted: str, with_milter: bool) -> Iterator[tuple[PostfixInstance, MilterDaemon]]:
    base = make_traversable_dir("pw-bench-")
    user = ensure_service_user()
    inst = Installation(base, user)
    inst.write(_settings(trusted))
    _activate_key(inst)
    sink = SmtpSink(base / "sink", extra_args=())
    sink.start()
    milter = MilterDaemon(inst)
    milter.start()
    postfix = PostfixInstance(
        hosted={},
        relay_domains=["hosted.test"],
        routes={"hosted.test": sink.nexthop, "ext.example": sink.nexthop},
    )
    try:
        postfix.start()
        if with_milter:
            wire(postfix, None, milter)
        yield postfix, milter
    finally:
        postfix.close()
        milter.stop()
        sink.stop()
        shutil.rmtree(base, ignore_errors=True)


def _run(label: str, trusted: str, with_milter: bool, sender: str, recipient: str) -> float:
    with _setup(trusted, with_milter) as (postfix, milter):
        _send(postfix.mx_port, sender, recipient)  # warm up: processes, caches, keys
        rate = _send(postfix.mx_port, sender, recipient)
        if with_milter:
            signed = milter.log_text().count("signed d=hosted.test")
            assert "sign" not in label or signed >= MESSAGES, "messages were not signed"
    print(f"{label:>44}: {rate:7.0f} messages/s")
    return rate


def main() -> None:
    print(
        f"{MESSAGES} messages of {SIZE // 1024} KB per run, {SESSIONS} SMTP sessions,"
        " smtp-source -> Postfix -> smtp-sink"
    )
    base = _run(
        "no milter (outgoing path)", "127.0.0.0/8", False, "alice@hosted.test", "x@ext.example"
    )
    signing = _run(
        "milter signing RSA-2048 (outgoing path)",
        "127.0.0.0/8",
        True,
        "alice@hosted.test",
        "x@ext.example",
    )
    inbound_base = _run(
        "no milter (inbound path)", "192.0.2.0/24", False, "a@ext.example", "bob@hosted.test"
    )
    rules = _run(
        "milter with 20 regex rules (inbound path)",
        "192.0.2.0/24",
        True,
        "a@ext.example",
        "bob@hosted.test",
    )
    print(
        f"ratio with signing: {signing / base:.2f}x, with 20 rules:"
        f" {rules / inbound_base:.2f}x (target >= 0.5x)"
    )
