"""``postwarden-policyd``: policy delegation and socketmap service for Postfix.

Usage:
    postwarden-policyd [--settings F] [--state-dir D] [--policy ADDR] [--socketmap ADDR]

ADDR is ``inet:HOST:PORT`` or ``unix:PATH``. Defaults: policy ``inet:127.0.0.1:10040``,
socketmap ``inet:127.0.0.1:10041``. See ``postwarden postfix-config`` for the main.cf lines.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from functools import partial

from postwarden import log as logsetup
from postwarden import metrics
from postwarden.errors import PostwardenError
from postwarden.metrics import start_metrics
from postwarden.policyd.protocol import format_reply, parse_request
from postwarden.policyd.server import (
    FramedProtocol,
    PolicyFraming,
    netstring_reply,
    socketmap_framing,
)
from postwarden.policyd.service import TEMPFAIL, PolicydView, PolicyService, compile_view
from postwarden.postfix.postconf import PostfixUnavailable, parameters
from postwarden.server import Daemon, ListenAddress, daemon_parser
from postwarden.settings import daemon_status
from postwarden.settings.activity import ListedEntries
from postwarden.settings.audit import FileChanges
from postwarden.settings.snapshot import Snapshot
from postwarden.settings.state_writer import StateWriter
from postwarden.util.netstring import encode

log = logging.getLogger("postwarden.policyd")

PROGRAM = "postwarden-policyd"


def build_parser() -> argparse.ArgumentParser:
    parser = daemon_parser(
        PROGRAM,
        "Answer Postfix policy delegation (IP lists, gateway-only, incoming TLS) and socketmap"
        " lookups (outgoing TLS policy, routing) from the postwarden settings.",
        metrics="inet:127.0.0.1:10043",
    )
    parser.add_argument(
        "--policy",
        default="inet:127.0.0.1:10040",
        metavar="ADDR",
        help="policy delegation listener (default %(default)s)",
    )
    parser.add_argument(
        "--socketmap",
        default="inet:127.0.0.1:10041",
        metavar="ADDR",
        help="socketmap listener (default %(default)s)",
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
    logsetup.setup(PROGRAM, level=args.log_level, syslog=args.syslog)
    writer: StateWriter | None = None
    try:
        policy_address = ListenAddress.parse(args.policy)
        socketmap_address = ListenAddress.parse(args.socketmap)
        level = global_tls_level(args)
        file_changes = FileChanges(args.state_dir, args.settings)
        report = daemon_status.reporter(
            args.state_dir, PROGRAM, f"{policy_address} {socketmap_address}", metrics.RELOADS.inc
        )

        def settings_changed(old: Snapshot | None, new: Snapshot) -> None:
            file_changes.noticed(
                old.settings if old else None, old.digest if old else "", new.settings, new.digest
            )
            report(old, new)
            if writer is not None:  # since when each IP list entry is enforced (block prune)
                writer.record(ListedEntries.of(new.settings, time.time()))

        daemon: Daemon[PolicydView] = Daemon(
            PROGRAM,
            args.settings,
            partial(compile_view, global_tls_level=level),
            on_settings_change=settings_changed,
            on_settings_refused=lambda reason: metrics.SETTINGS_REFUSED.labels(reason).inc(),
        )
        settings_changed(None, daemon.source.current)
    except (PostwardenError, OSError) as exc:
        log.critical("%s", exc)
        return 1
    start_metrics(args.metrics)
    published = daemon.published
    writer = StateWriter(
        args.state_dir,
        lambda: published.value.snapshot.settings.block_history,
        decision_log=lambda: published.value.snapshot.settings.decision_log,
    )
    writer.start()
    writer.record(ListedEntries.of(published.value.snapshot.settings, time.time()))
    service = PolicyService(lambda: published.value, writer.record)

    def policy(frame: bytes) -> bytes:
        return format_reply(service.answer_policy(parse_request(frame)))

    servers = [
        (
            policy_address,
            lambda: FramedProtocol(PolicyFraming(), policy, format_reply(TEMPFAIL), "policy"),
        ),
        (
            socketmap_address,
            lambda: FramedProtocol(
                socketmap_framing(),
                netstring_reply(service.answer_socketmap),
                encode(b"TEMP internal error"),
                "socketmap",
            ),
        ),
    ]
    try:
        daemon.run(servers)
    except OSError as exc:
        log.critical("cannot listen: %s", exc)
        return 1
    finally:
        writer.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
