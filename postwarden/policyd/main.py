"""``postwarden-policyd``: policy delegation and socketmap service for Postfix.

Usage:
    postwarden-policyd [--store URL] [--settings F] [--state-dir D] [--policy ADDR]
                       [--socketmap ADDR] [--workers N] [--max-connections N]

ADDR is ``inet:HOST:PORT`` or ``unix:PATH``; the defaults are in :mod:`postwarden.listeners`.
See ``postwarden postfix-config`` for the main.cf lines.

One process per core by default (``--workers``): the parent compiles the settings and binds
the listeners, the workers answer (see :mod:`postwarden.prefork`). Every worker answers
policy requests; worker 0 alone answers socketmap lookups, because ``rcptok`` and
``unknown`` need the unknown-recipient admissions the policy answers made, which the other
workers relay to it (:mod:`postwarden.policyd.admission_relay`). Each worker writes what it
learns (blocks, admitted unknown recipients) through its own bounded state writer; SQLite's
locking serialises the writers (WAL, a 5 s busy timeout), as it already does for the milter
and the CLI.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from collections.abc import Sequence
from functools import partial

from postwarden import listeners, metrics
from postwarden import log as logsetup
from postwarden.errors import PostwardenError
from postwarden.metrics import start_metrics
from postwarden.policyd.admission_relay import AdmissionPipe, CollectingService, RelayingService
from postwarden.policyd.protocol import format_reply, parse_request
from postwarden.policyd.server import (
    FramedProtocol,
    PolicyFraming,
    netstring_reply,
    socketmap_framing,
)
from postwarden.policyd.service import TEMPFAIL, PolicydView, compile_view
from postwarden.postfix.postconf import PostfixUnavailable, parameters
from postwarden.server import (
    Daemon,
    ListenAddress,
    Worker,
    daemon_parser,
    drop_privileges,
    hold_signals,
    listen,
    open_daemon_store,
)
from postwarden.settings.snapshot import Snapshot
from postwarden.state.activity import ListedEntries
from postwarden.state.writer import StateWriter
from postwarden.util.netstring import encode

log = logging.getLogger("postwarden.policyd")

PROGRAM = "postwarden-policyd"
# Postfix's default process limit is 100 smtpd processes, each with a policy and a
# socketmap connection, plus trivial-rewrite, smtp and postscreen: room for all of them
# twice over; a partial request holds at most 64 KB, so the worst case is bounded too.
DEFAULT_MAX_CONNECTIONS = 1000


def build_parser() -> argparse.ArgumentParser:
    parser = daemon_parser(
        PROGRAM,
        "Answer Postfix policy delegation (IP lists, gateway-only, incoming TLS) and socketmap"
        " lookups (outgoing TLS policy, routing) from the postwarden settings.",
        metrics=listeners.POLICYD_METRICS,
    )
    parser.add_argument(
        "--policy",
        default=listeners.POLICY,
        metavar="ADDR",
        help="policy delegation listener (default %(default)s)",
    )
    parser.add_argument(
        "--socketmap",
        default=listeners.SOCKETMAP,
        metavar="ADDR",
        help="socketmap listener (default %(default)s)",
    )
    parser.add_argument(
        "--workers",
        type=_positive,
        default=len(os.sched_getaffinity(0)) or 1,
        metavar="N",
        help="worker processes (default: one per core it may run on, %(default)s here)",
    )
    parser.add_argument(
        "--max-connections",
        type=_positive,
        default=DEFAULT_MAX_CONNECTIONS,
        metavar="N",
        help="connections open at once, both listeners and all workers; more are closed"
        " unanswered, logged and counted (default %(default)s)",
    )
    parser.add_argument(
        "--postfix-config-dir",
        metavar="DIR",
        help="the Postfix instance whose smtp_tls_security_level is the floor",
    )
    parser.add_argument(
        "--tls-security-level",
        metavar="LEVEL",
        help="the global smtp_tls_security_level (default: ask postconf)",
    )
    return parser


def _count_reload() -> None:
    metrics.RELOADS.inc()  # looked up now: the workers count in their own metric objects


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return int(text)


def global_tls_level(args: argparse.Namespace) -> str:
    if args.tls_security_level:
        return str(args.tls_security_level)
    try:
        level = parameters(["smtp_tls_security_level"], args.postfix_config_dir)
    except PostfixUnavailable as exc:
        log.warning("cannot read smtp_tls_security_level (%s); assuming 'may'", exc)
        return "may"
    return level["smtp_tls_security_level"] or "none"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    hold_signals()  # until the supervisor waits for them
    logsetup.setup(PROGRAM, level=args.log_level, syslog=args.syslog)
    writer: StateWriter | None = None
    try:
        policy_address = ListenAddress.parse(args.policy)
        socketmap_address = ListenAddress.parse(args.socketmap)
        level = global_tls_level(args)
        addresses = [policy_address, socketmap_address]
        # Listen first (root may bind anything), then become the service user before any
        # settings or state is read (bind, then drop, as Postfix's daemons do).
        sockets = [listen(a, PROGRAM) for a in addresses]
        drop_privileges(args.user, [a.path for a in addresses if a.path])
        link = open_daemon_store(args).attach(PROGRAM)
        report = link.reporter(f"{policy_address} {socketmap_address}", _count_reload)

        def settings_changed(old: Snapshot | None, new: Snapshot) -> None:
            report(old, new)
            if writer is not None:  # since when each IP list entry is enforced (block prune)
                writer.record(ListedEntries.of(new.settings, time.time()))

        daemon: Daemon[PolicydView] = Daemon(
            PROGRAM,
            link,
            partial(compile_view, global_tls_level=level),
            on_settings_change=settings_changed,
            on_settings_refused=lambda reason: metrics.SETTINGS_REFUSED.labels(reason).inc(),
            workers=args.workers,
            max_connections=args.max_connections,
        )
        settings_changed(None, daemon.source.current)
    except (PostwardenError, OSError) as exc:
        log.critical("%s", exc)
        return 1
    published = daemon.published
    pipe = AdmissionPipe()  # before forking: every worker inherits it
    metrics_dir = ""

    def before_fork() -> None:
        nonlocal metrics_dir
        metrics_dir = metrics.use_multiprocess()
        start_metrics(args.metrics, metrics.POLICYD)

    def start_worker(index: int) -> Worker:
        nonlocal writer  # this worker's own (settings_changed records through it in worker 0)
        own = writer = link.writer(
            lambda: published.value.snapshot.settings.block_history,
            lambda: published.value.snapshot.settings.decision_log,
        )
        if index == 0:  # since when each IP list entry is enforced (block prune)
            own.record(ListedEntries.of(published.value.snapshot.settings, time.time()))
        kind = CollectingService if index == 0 else RelayingService
        service = kind(lambda: published.value, own.record, pipe=pipe)

        def policy(frame: bytes) -> bytes:
            return format_reply(service.answer_policy(parse_request(frame)))

        def policy_protocol() -> FramedProtocol:
            return FramedProtocol(PolicyFraming(), policy, format_reply(TEMPFAIL), "policy")

        def socketmap_protocol() -> FramedProtocol:
            return FramedProtocol(
                socketmap_framing(),
                netstring_reply(service.answer_socketmap),
                encode(b"TEMP internal error"),
                "socketmap",
            )

        def stop() -> None:
            own.stop()
            link.stop()

        if isinstance(service, CollectingService):

            def started(loop: asyncio.AbstractEventLoop) -> None:
                service.watch(loop)
                link.start(daemon.poke)  # worker 0 keeps the store's settings current

            return Worker([policy_protocol, socketmap_protocol], started=started, stop=stop)
        return Worker([policy_protocol, None], stop=stop)

    try:
        return daemon.run(
            addresses,
            start_worker,
            before_fork=before_fork,
            first_worker_only=frozenset({1}),  # socketmap: admissions live in worker 0
            sockets=sockets,
        )
    finally:
        if metrics_dir:
            metrics.remove_multiprocess(metrics_dir)


if __name__ == "__main__":
    sys.exit(main())
