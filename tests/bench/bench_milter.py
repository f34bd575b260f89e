"""postwarden-milter through a real Postfix, against OpenDKIM and against no milter at all.

One private Postfix instance (tests/harness), smtp-source sending 10 KB messages over 10
parallel SMTP sessions, everything relayed on to an smtp-sink. Every milter listens on a
unix socket (Debian's default for OpenDKIM). Rounds are interleaved: each round measures
every configuration once, one after the other, in the same Postfix (only ``smtpd_milters``
changes, with a ``postfix reload``), and the start of the order rotates from round to
round, so that a neighbour's load on the shared machine falls on all of them alike. Each
figure is the median of :data:`ROUNDS` rounds, with the range; beside each milter, its own
CPU time per message (``/proc``), which the load elsewhere on the machine moves far less.

- outgoing path, the client trusted: no milter; postwarden-milter signing (RSA-2048);
  OpenDKIM signing with the same key, selector and relaxed/relaxed canonicalisation;
- inbound path, the client untrusted: no milter; postwarden-milter running 20 regex rules
  (none matching) on every message.

The figures that count are the ratios within the same run: postwarden / OpenDKIM and
postwarden / no milter (targets, issue #14: >= 1.3 x OpenDKIM and >= 0.6 x no milter
signing; >= 0.7 x no milter with 20 rules). Needs root (Postfix; apt for OpenDKIM).
"""

from __future__ import annotations

import grp
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from postwarden.dkim import keys
from postwarden.dkim.store import DkimKeys
from postwarden.state.db import StateDB
from tests.bench.anchors import OpenDkim
from tests.harness import PostfixInstance, ServiceUser, SmtpSink, ensure_service_user
from tests.harness.fixtures import make_traversable_dir
from tests.harness.proc import cpu_seconds
from tests.integration.daemons import Installation, MilterDaemon

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
MESSAGES = int(os.environ.get("BENCH_MESSAGES", "1500"))
WARM_UP = 200
SESSIONS = 10
SIZE = 10 * 1024
DOMAIN, SELECTOR = "hosted.test", "bench"
RULES = "\n".join(
    f"      - {{name: r{i}, field: {('subject', 'body', 'from', 'header:X-Mailer')[i % 4]},"
    f" pattern: '(?i)never-matches-{i}\\s+\\w+'}}"
    for i in range(20)
)
MILTER_OPTIONS = "default_action=tempfail, connect_timeout=10s, command_timeout=30s"


def _settings(trusted: str) -> str:
    return (
        f"version: 1\nprimary_domain: {DOMAIN}\n"
        f"trusted_networks: [{trusted}]\n"
        f"domains:\n  {DOMAIN}:\n    spam_rules:\n" + RULES + "\n"
    )


@dataclass
class Configuration:
    """One line of the table: which milter Postfix calls, and who sends to whom."""

    label: str
    milter: str  # smtpd_milters value ("" = none)
    sender: str
    recipient: str
    check: Callable[[bytes], bool]  # is a delivered message as this configuration makes it?
    pid: Callable[[], int] | None = None  # the milter process, for its CPU per message
    rates: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)  # the milter's CPU per message

    def summary(self) -> str:
        median = statistics.median(self.rates)
        cpu = f", milter CPU {statistics.median(self.cpu_ms):.2f} ms/message" if self.cpu_ms else ""
        return (
            f"{self.label:>42}: {median:6.0f} messages/s"
            f" (range {min(self.rates):.0f}-{max(self.rates):.0f}){cpu}"
        )


def _signed_by(selector: str) -> Callable[[bytes], bool]:
    return lambda raw: f"d={DOMAIN}".encode() in raw and f"s={selector}".encode() in raw


def _unsigned(raw: bytes) -> bool:
    return b"DKIM-Signature" not in raw


def _pid(daemon: MilterDaemon) -> int:
    assert daemon.process is not None
    return daemon.process.pid


def _milter(path: Path) -> str:
    return f"{{ unix:{path}, {MILTER_OPTIONS} }}"


def _install(base: Path, user: ServiceUser, trusted: str) -> Installation:
    inst = Installation(base, user)
    inst.write(_settings(trusted))
    return inst


def _activate_key(inst: Installation, key: keys.PrivateKey) -> bytes:
    """The key active for the domain without a DNS check (signing only); its PEM."""
    with StateDB.open(inst.state_dir) as db:
        path = keys.write_key(inst.state_dir, DOMAIN, SELECTOR, key)
        store = DkimKeys(db)
        store.add(DOMAIN, SELECTOR, keys.Algorithm.RSA, 2048)
        store.activate(DOMAIN, SELECTOR, "benchmark")
    subprocess.run(
        ["chown", "-R", f"{inst.user.uid}:{inst.user.gid}", str(inst.state_dir)], check=True
    )
    return path.read_bytes()


def _socket_dir(base: Path, user: ServiceUser) -> Path:
    """Sockets the daemons create with group postfix (setgid), mode 0660: Postfix connects."""
    sockets = base / "sockets"
    sockets.mkdir()
    os.chown(sockets, user.uid, grp.getgrnam("postfix").gr_gid)
    sockets.chmod(0o2750)
    return sockets


def _send(port: int, count: int, sender: str, recipient: str) -> float:
    start = time.perf_counter()
    subprocess.run(
        ["smtp-source", "-c", "-s", str(SESSIONS), "-m", str(count), "-l", str(SIZE),
         "-f", sender, "-t", recipient, "-M", "bench.client", f"127.0.0.1:{port}"],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=900,
    )  # fmt: skip
    return count / (time.perf_counter() - start)


@contextmanager
def _running() -> Iterator[tuple[PostfixInstance, SmtpSink, list[Configuration]]]:
    """Postfix, the sink, both postwarden milters and OpenDKIM; the configurations."""
    with ExitStack() as stack:
        base = make_traversable_dir("pw-bench-")
        stack.callback(shutil.rmtree, base, True)
        user = ensure_service_user()
        sockets = _socket_dir(base, user)
        (base / "out").mkdir()
        (base / "in").mkdir()
        outgoing = _install(base / "out", user, "127.0.0.0/8")
        inbound = _install(base / "in", user, "192.0.2.0/24")
        pem = _activate_key(outgoing, keys.generate(keys.Algorithm.RSA, 2048))
        signer = MilterDaemon(outgoing, socket_path=sockets / "signer")
        filterer = MilterDaemon(inbound, socket_path=sockets / "rules")
        opendkim = OpenDkim(
            base / "opendkim", user, domain=DOMAIN, selector=SELECTOR, key_pem=pem,
            socket_path=sockets / "opendkim",
        )  # fmt: skip
        sink = SmtpSink(base / "sink")
        for daemon in (sink, signer, filterer, opendkim):
            daemon.start()
            stack.callback(daemon.stop)
        postfix = PostfixInstance(
            hosted={},
            relay_domains=[DOMAIN],
            routes={DOMAIN: sink.nexthop, "ext.example": sink.nexthop},
        )
        stack.callback(postfix.close)
        postfix.start()
        out, into = ("alice@hosted.test", "x@ext.example"), ("a@ext.example", "bob@hosted.test")
        configurations = [
            Configuration("no milter (outgoing path)", "", *out, _unsigned),
            Configuration(
                "postwarden-milter signing RSA-2048", _milter(signer.socket_path), *out,
                _signed_by(SELECTOR), lambda: _pid(signer),
            ),
            Configuration(
                "OpenDKIM signing RSA-2048", _milter(opendkim.socket_path), *out,
                _signed_by(SELECTOR), lambda: opendkim.pid,
            ),
            Configuration("no milter (inbound path)", "", *into, _unsigned),
            Configuration(
                "postwarden-milter, 20 regex rules", _milter(filterer.socket_path), *into,
                _unsigned, lambda: _pid(filterer),
            ),
        ]  # fmt: skip
        yield postfix, sink, configurations


def _measure(postfix: PostfixInstance, sink: SmtpSink, config: Configuration) -> float:
    postfix.postconf({"smtpd_milters": config.milter})  # and reload
    _send(postfix.mx_port, WARM_UP, config.sender, config.recipient)  # processes, caches
    before = cpu_seconds(config.pid()) if config.pid else 0.0
    rate = _send(postfix.mx_port, MESSAGES, config.sender, config.recipient)
    if config.pid:  # the milter's work for a message ends before smtp-source hears 250
        config.cpu_ms.append((cpu_seconds(config.pid()) - before) / MESSAGES * 1e3)
    postfix.wait_until_queue_empty(timeout=120)
    last = sink.messages()[-1].raw
    assert config.check(last), f"{config.label}: the message was not treated as expected"
    for dump in sink.dump_dir.iterdir():  # keep the disk free for the next round
        dump.unlink()
    return rate


def main() -> None:
    print(
        f"{ROUNDS} interleaved rounds of {MESSAGES} messages of {SIZE // 1024} KB per"
        f" configuration, {SESSIONS} SMTP sessions, smtp-source -> Postfix -> smtp-sink;"
        f" milters on unix sockets; load average at start {os.getloadavg()[0]:.2f}"
    )
    with _running() as (postfix, sink, configurations):
        for round_number in range(ROUNDS):
            shift = round_number % len(configurations)
            for config in configurations[shift:] + configurations[:shift]:
                config.rates.append(_measure(postfix, sink, config))
            print(f"  round {round_number + 1} done", file=sys.stderr)
    none_out, signer, opendkim, none_in, rules = configurations
    for config in configurations:
        print(config.summary())

    def ratio(a: Configuration, b: Configuration) -> float:
        return statistics.median(a.rates) / statistics.median(b.rates)

    print(
        f"signing: postwarden / OpenDKIM {ratio(signer, opendkim):.2f}x (target >= 1.3x),"
        f" postwarden / no milter {ratio(signer, none_out):.2f}x (target >= 0.6x),"
        f" OpenDKIM / no milter {ratio(opendkim, none_out):.2f}x"
    )
    print(f"20 regex rules: postwarden / no milter {ratio(rules, none_in):.2f}x (target >= 0.7x)")
    print(
        "milter CPU per signed message: postwarden / OpenDKIM"
        f" {statistics.median(signer.cpu_ms) / statistics.median(opendkim.cpu_ms):.2f}x"
    )
    print(f"load average at end {os.getloadavg()[0]:.2f}")
