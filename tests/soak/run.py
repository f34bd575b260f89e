"""Soak: messages through Postfix while the daemons are killed and restarted at random.

Every message gets a unique subject. Senders behave like MTAs: a 4xx answer (a daemon is
down) means "try again shortly"; a 5xx answer is final. A tenth of the senders are on the
blocked list and must be rejected. Meanwhile a killer thread SIGKILLs policyd or the
milter at random moments and restarts it. At the end the mailbox is counted: every accepted
message delivered exactly once, no rejected one delivered, none lost. Memory of both
daemons is sampled over a last phase without kills.

``make soak`` runs the long version; the test suite runs a short one.
"""

from __future__ import annotations

import argparse
import random
import shutil
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from tests.harness import PostfixInstance, ensure_service_user, send
from tests.harness.fixtures import make_traversable_dir
from tests.harness.proc import resident_mb
from tests.integration.daemons import Installation, MilterDaemon, Policyd, wire

SETTINGS = """\
version: 1
primary_domain: hosted.test
trusted_networks: [127.0.0.1/32]
domains:
  hosted.test:
    blocked_ips: [203.0.113.0/24]
    allowed_ips: [198.51.100.7]
    spam_rules:
      - {name: soak, field: subject, pattern: 'soak 7\\d*$'}
"""


@dataclass
class Stats:
    sent: int = 0
    accepted: int = 0
    rejected: int = 0
    retries: int = 0
    kills: Counter[str] = field(default_factory=Counter)
    delivered: int = 0
    duplicates: int = 0
    lost: int = 0
    wrongly_delivered: int = 0
    rss_mb: dict[str, tuple[float, float]] = field(default_factory=dict)

    def summary(self) -> str:
        memory = ", ".join(f"{name} {a:.0f} -> {b:.0f} MB" for name, (a, b) in self.rss_mb.items())
        return (
            f"messages {self.sent}: accepted {self.accepted}, rejected {self.rejected}"
            f" (blocked senders), 4xx retries {self.retries}; kills: policyd"
            f" {self.kills['policyd']}, milter {self.kills['milter']}; delivered"
            f" {self.delivered}, duplicates {self.duplicates}, lost {self.lost}, rejected"
            f" but delivered {self.wrongly_delivered}; memory (no-kill phase): {memory}"
        )


class Soak:
    def __init__(self, messages: int, kills: int, workers: int = 4) -> None:
        self.messages = messages
        self.kills = kills
        self.workers = workers
        self.stats = Stats()
        self.accepted: set[int] = set()
        self.rejected: set[int] = set()
        self.lock = threading.Lock()
        self.next = 0
        self.killing = threading.Event()

    def run(self) -> Stats:
        base = make_traversable_dir("pw-soak-")
        installation = Installation(base, ensure_service_user())
        installation.write(SETTINGS)
        policyd = Policyd(installation)
        self.daemons = {"policyd": policyd, "milter": MilterDaemon(installation, policyd)}
        for daemon in self.daemons.values():
            daemon.start()
        postfix = PostfixInstance(hosted={"hosted.test": ("bob",)})
        try:
            postfix.start()
            wire(postfix, self.daemons["policyd"], self.daemons["milter"])  # type: ignore[arg-type]
            self._send_all(postfix)
            self._count(postfix)
        finally:
            postfix.close()
            for daemon in self.daemons.values():
                daemon.stop()
            shutil.rmtree(base, ignore_errors=True)
        return self.stats

    def _send_all(self, postfix: PostfixInstance) -> None:
        quiet_after = int(self.messages * 0.8)  # the last fifth: no kills, memory sampled
        killer = threading.Thread(target=self._killer, args=(quiet_after,), daemon=True)
        self.killing.set()
        killer.start()
        threads = [
            threading.Thread(target=self._worker, args=(postfix, quiet_after))
            for _ in range(self.workers)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        killer.join()
        after = {
            n: resident_mb(d.process.pid)
            for n, d in self.daemons.items()  # type: ignore[union-attr]
            if d.process
        }
        self.stats.rss_mb = {n: (self.rss_before[n], after[n]) for n in after}

    def _take(self) -> int | None:
        with self.lock:
            if self.next >= self.messages:
                return None
            self.next += 1
            return self.next - 1

    def _worker(self, postfix: PostfixInstance, quiet_after: int) -> None:
        while (number := self._take()) is not None:
            if number == quiet_after:
                self.killing.clear()
            blocked = number % 10 == 0
            client = f"203.0.113.{number % 250 + 1}" if blocked else f"198.51.100.{number % 250}"
            for _ in range(600):
                try:
                    result = send(
                        postfix.mx_port,
                        "sender@ext.example",
                        ["bob@hosted.test"],
                        client_ip=client,
                        headers={"Subject": f"soak {number}"},
                        timeout=30,
                    )
                except OSError:
                    result = None
                replies = (
                    []
                    if result is None
                    else [
                        result.mail,
                        *result.rcpts.values(),
                        *([result.data] if result.data else []),
                    ]
                )
                if result is not None and result.queue_id:
                    with self.lock:
                        self.accepted.add(number)
                    break
                if any(reply.code // 100 == 5 for reply in replies):
                    with self.lock:
                        self.rejected.add(number)
                    break
                with self.lock:
                    self.stats.retries += 1
                time.sleep(0.2)
            else:
                raise RuntimeError(f"message {number} never got a final answer")

    def _killer(self, quiet_after: int) -> None:
        rng = random.Random(7)
        done = 0
        while self.killing.is_set() and done < self.kills:
            time.sleep(rng.uniform(0.05, 0.4))
            if not self.killing.is_set():
                break
            name = ("policyd", "milter")[done % 2]  # in turn: both are killed, at random times
            daemon = self.daemons[name]
            daemon.kill()  # type: ignore[attr-defined]
            time.sleep(rng.uniform(0.05, 0.4))
            daemon.start()  # type: ignore[attr-defined]
            self.stats.kills[name] += 1
            done += 1
        while self.killing.is_set():  # sample memory when the quiet phase begins
            time.sleep(0.05)
        self.rss_before = {
            n: resident_mb(d.process.pid)
            for n, d in self.daemons.items()  # type: ignore[union-attr]
            if d.process
        }

    def _count(self, postfix: PostfixInstance) -> None:
        deadline = time.monotonic() + 120
        while postfix.queue_ids() and time.monotonic() < deadline:
            postfix.flush()
            time.sleep(1)
        subjects = Counter(str(m.message["Subject"]) for m in postfix.mailbox("bob@hosted.test"))
        numbers = Counter(int(s.split()[1]) for s in subjects.elements())
        stats = self.stats
        stats.sent = self.messages
        stats.accepted, stats.rejected = len(self.accepted), len(self.rejected)
        stats.delivered = len(numbers)
        stats.duplicates = sum(count - 1 for count in numbers.values() if count > 1)
        stats.lost = len(self.accepted - set(numbers))
        stats.wrongly_delivered = len(self.rejected & set(numbers))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--kills", type=int, default=40)
    args = parser.parse_args()
    started = time.monotonic()
    stats = Soak(args.messages, args.kills).run()
    print(stats.summary())
    print(f"({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
