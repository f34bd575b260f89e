"""``postwarden-milter``: DKIM signing, regex spam tagging, header rewrites for Postfix.

Usage:
    postwarden-milter [--store URL] [--settings F] [--state-dir D] [--socket ADDR]

ADDR is ``inet:HOST:PORT`` or ``unix:PATH`` (Postfix's spelling; the default is in
:mod:`postwarden.listeners`). Settings and DKIM keys are re-read when they change (checked
every second) and on SIGUSR1. A thread of its own watches the DKIM keys in DNS
(:mod:`postwarden.milter.key_watch`). libmilter, which runs the connections, reserves SIGHUP and
SIGTERM to stop: ``systemctl reload`` sends SIGUSR1.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import Milter

from postwarden import listeners, metrics
from postwarden import log as logsetup
from postwarden.errors import PostwardenError
from postwarden.metrics import start_metrics
from postwarden.milter.app import PostwardenMilter
from postwarden.milter.app import run as run_milter
from postwarden.milter.key_watch import KeyWatchThread
from postwarden.milter.keyring import KeyRing
from postwarden.milter.recipients import KnownRecipients
from postwarden.milter.view import MilterView, compile_view
from postwarden.server import (
    ListenAddress,
    Published,
    SettingsWatcher,
    daemon_parser,
    drop_privileges,
    open_daemon_store,
)
from postwarden.state.writer import StateWriter
from postwarden.store import DaemonLink
from postwarden.util import sdnotify
from postwarden.util.socketmap_client import SocketmapClient

log = logging.getLogger("postwarden.milter")

PROGRAM = "postwarden-milter"
_SIGNALS = {signal.SIGUSR1, signal.SIGTERM, signal.SIGHUP, signal.SIGINT}
IO_TIMEOUT = 600  # seconds libmilter waits for Postfix; Postfix's own timeouts are shorter


def build_parser() -> argparse.ArgumentParser:
    parser = daemon_parser(
        PROGRAM,
        "DKIM signing, regex spam tagging, header rewrites, gateway original-IP checks and"
        " routing for Postfix, from the postwarden settings.",
        metrics=listeners.MILTER_METRICS,
    )
    parser.add_argument(
        "--socket",
        default=listeners.MILTER,
        metavar="ADDR",
        help="listening address (default %(default)s)",
    )
    parser.add_argument(
        "--policyd-socketmap",
        default="inet:127.0.0.1:10041",
        metavar="ADDR",
        help="postwarden-policyd's socketmap listener, asked which recipients Postfix did not"
        " know (for 'keep a local copy'); 'none' to use the state database only"
        " (default %(default)s)",
    )
    return parser


def _policyd_client(address: str) -> SocketmapClient | None:
    if address == "none":
        return None
    target = ListenAddress.parse(address)

    def connect() -> socket.socket:
        if target.path:
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            conn.settimeout(2.0)
            conn.connect(target.path)
            return conn
        return socket.create_connection((target.host, target.port), timeout=2.0)

    return SocketmapClient(connect)


def libmilter_address(address: ListenAddress) -> str:
    """Postfix writes inet:HOST:PORT; libmilter wants inet:PORT@HOST (inet6 for IPv6)."""
    if address.path:
        return f"unix:{address.path}"
    family = "inet6" if ":" in address.host else "inet"
    return f"{family}:{address.port}@{address.host}"


def _no_delay_on_listener(port: int) -> None:
    """Set TCP_NODELAY on libmilter's listening socket (accepted sockets inherit it).

    libmilter answers a command with several small writes (a header change, then the
    verdict); with Nagle's algorithm on, the second waits for the ACK of the first, which
    Postfix delays: about 40 ms per message on loopback TCP.
    """
    for name in os.listdir("/proc/self/fd"):
        try:
            sock = socket.socket(fileno=os.dup(int(name)))
        except OSError:
            continue
        with sock:
            try:
                listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
                bound = sock.family in (socket.AF_INET, socket.AF_INET6) and (
                    sock.getsockname()[1] == port
                )
            except OSError:
                continue
            if listening and bound:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _count_reload() -> None:
    metrics.RELOADS.inc()


def _keep_alive(interval: float, watcher: SettingsWatcher) -> None:
    """Ping systemd's watchdog while the settings watcher lives (libmilter runs the rest)."""
    while watcher.alive():
        sdnotify.notify("WATCHDOG=1")
        time.sleep(interval)


def _reload_on_usr1(watcher: SettingsWatcher) -> None:
    """SIGUSR1 is blocked in every thread; this one waits for it."""
    while True:
        signal.sigwait({signal.SIGUSR1})
        log.info("SIGUSR1: reloading settings and keys")
        watcher.poke()


@dataclass
class _Running:
    """What the milter runs besides libmilter: its store link, settings watcher, key watch
    and block recorder."""

    link: DaemonLink
    watcher: SettingsWatcher
    key_watch: KeyWatchThread
    recorder: StateWriter

    def stop(self) -> None:
        self.watcher.stop()
        self.key_watch.stop()
        self.recorder.stop()
        self.link.stop()


def _start(args: argparse.Namespace, address: ListenAddress) -> _Running:
    """Load settings and keys, report, start the threads: as the user the milter runs as."""
    link = open_daemon_store(args).attach(PROGRAM)
    keyring = KeyRing(link.keys())  # before the source: a shared store fetches both at once
    source = link.source(on_refused=lambda reason: metrics.SETTINGS_REFUSED.labels(reason).inc())
    known = KnownRecipients(args.state_dir, _policyd_client(args.policyd_socketmap))
    settings_changed = link.reporter(str(address), _count_reload)
    published: Published[MilterView] = Published(
        source,
        partial(compile_view, load_keys=keyring.load, known=known),
        also_changed=keyring.changed,
        on_settings_change=settings_changed,
    )
    settings_changed(None, source.current)
    recorder = link.writer(lambda: published.value.snapshot.settings.block_history)
    watcher = SettingsWatcher(published)
    watcher.start()
    key_watch = KeyWatchThread(link.store, lambda: published.value.snapshot.settings)
    key_watch.start()
    link.start(watcher.poke)
    threading.Thread(target=_reload_on_usr1, args=(watcher,), name="reload", daemon=True).start()
    PostwardenMilter.view = staticmethod(lambda: published.value)
    PostwardenMilter.record = staticmethod(recorder.record)
    interval = sdnotify.watchdog_interval()
    if interval:
        threading.Thread(
            target=_keep_alive, args=(interval, watcher), name="watchdog", daemon=True
        ).start()
    return _Running(link, watcher, key_watch, recorder)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logsetup.setup(PROGRAM, level=args.log_level, syslog=args.syslog)
    # Block the signals before any thread starts, so that every thread inherits the mask:
    # SIGUSR1 is for the reload thread's sigwait(); SIGTERM, SIGHUP and SIGINT for the
    # sigwait() of libmilter's signal thread, which stops the milter after the connections
    # in progress. Unblocked in any other thread, SIGTERM would kill the process outright.
    signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        address = ListenAddress.parse(args.socket)
    except PostwardenError as exc:
        log.critical("%s", exc)
        return 1
    start_metrics(args.metrics, metrics.MILTER)
    Milter.factory = PostwardenMilter
    running: list[_Running] = []

    # libmilter binds its socket in smfi_opensocket(), which run_milter() calls after
    # registering and before smfi_main() starts accepting; *listening* runs in between. That
    # is the one moment to act as Postfix's daemons do: bind as whoever started us (root may
    # bind any port, in any directory), then drop to the service user before libmilter's
    # threads run and before any settings, key or state file is opened. Dropping before
    # instead would only work where the service user may bind (its own directory, a port
    # above 1024). setresuid() in glibc applies to every thread (the metrics thread runs).
    mask = os.umask(0o117)  # the unix socket: exactly 0660 (libmilter does not chmod)

    def listening() -> None:
        os.umask(mask)
        if not address.path:
            _no_delay_on_listener(address.port)
        drop_privileges(args.user, [address.path] if address.path else [])
        running.append(_start(args, address))
        log.info("%s started: %s", PROGRAM, address)
        sdnotify.notify("READY=1", f"STATUS=milter on {address}")

    try:
        run_milter(PROGRAM, libmilter_address(address), IO_TIMEOUT, listening=listening)
    except Milter.milter.error as exc:
        log.critical("cannot run the milter on %s: %s", address, exc)
        return 1
    except (PostwardenError, OSError) as exc:
        log.critical("%s", exc)
        return 1
    finally:
        for part in running:
            part.stop()
        if address.path and running:  # libmilter leaves its socket behind
            with contextlib.suppress(OSError):
                os.unlink(address.path)
    log.info("%s stopped", PROGRAM)
    return 0


if __name__ == "__main__":
    sys.exit(main())
