"""``postwarden-milter``: DKIM signing, regex spam tagging, header rewrites for Postfix.

Usage:
    postwarden-milter [--store URL] [--settings F] [--state-dir D] [--socket ADDR]

ADDR is ``inet:HOST:PORT`` or ``unix:PATH`` (Postfix's spelling; the default is in
:mod:`postwarden.listeners`). Settings and DKIM keys are re-read when they change (checked
every second) and on SIGHUP (``systemctl reload``) or SIGUSR1. A thread of its own watches
the DKIM keys in DNS (:mod:`postwarden.milter.key_watch`). The connections run on one event
loop (:mod:`postwarden.milter.server`); SIGTERM and SIGINT stop the milter once the messages
in progress have their verdict (at most :data:`STOP_TIMEOUT` seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import uvloop

from postwarden import listeners, metrics
from postwarden import log as logsetup
from postwarden.errors import PostwardenError
from postwarden.metrics import start_metrics
from postwarden.milter.app import PostwardenMilter
from postwarden.milter.key_watch import KeyWatchThread
from postwarden.milter.keyring import KeyRing
from postwarden.milter.recipients import KnownRecipients
from postwarden.milter.server import Connections, MilterConnection
from postwarden.milter.view import MilterView, compile_view
from postwarden.server import (
    ListenAddress,
    Published,
    SettingsWatcher,
    daemon_parser,
    drop_privileges,
    listen,
    open_daemon_store,
)
from postwarden.state.writer import StateWriter
from postwarden.store import DaemonLink
from postwarden.util import sdnotify
from postwarden.util.socketmap_client import SocketmapClient

log = logging.getLogger("postwarden.milter")

PROGRAM = "postwarden-milter"
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_RELOAD_SIGNALS = (signal.SIGHUP, signal.SIGUSR1)  # SIGUSR1: what units before 2026-12 send
STOP_TIMEOUT = 10.0  # seconds the connections in progress get to finish on stop
EOM_THREADS = 4  # ends of message that may wait on policyd at once (see milter.server)


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


def _count_reload() -> None:
    metrics.RELOADS.inc()


@dataclass
class _Running:
    """What the milter runs besides the connections: its store link, settings watcher, key
    watch and block recorder."""

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
    PostwardenMilter.view = staticmethod(lambda: published.value)
    PostwardenMilter.record = staticmethod(recorder.record)
    return _Running(link, watcher, key_watch, recorder)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Pending until the event loop handles them, and never taken by the threads started
    # below (they inherit the mask): a SIGTERM while starting up is a clean stop after.
    signal.pthread_sigmask(signal.SIG_BLOCK, {*_STOP_SIGNALS, *_RELOAD_SIGNALS})
    logsetup.setup(PROGRAM, level=args.log_level, syslog=args.syslog)
    try:
        address = ListenAddress.parse(args.socket)
        # Bind as whoever started us (root may bind any port, in any directory), then
        # become the service user before any settings, key or state file is opened.
        sock = listen(address, PROGRAM)
        drop_privileges(args.user, [address.path] if address.path else [])
        start_metrics(args.metrics, metrics.MILTER)
        running = _start(args, address)
    except (PostwardenError, OSError) as exc:
        log.critical("%s", exc)
        return 1
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(_serve(sock, address, running))
    finally:
        running.stop()
        if address.path:
            with contextlib.suppress(OSError):
                os.unlink(address.path)
    log.info("%s stopped", PROGRAM)
    return 0


async def _serve(sock: socket.socket, address: ListenAddress, running: _Running) -> None:
    """Answer Postfix on *sock* until a stop signal, then let the connections finish."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signo in _STOP_SIGNALS:
        loop.add_signal_handler(signo, stop.set)
    for signo in _RELOAD_SIGNALS:
        loop.add_signal_handler(signo, _reload, running.watcher)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {*_STOP_SIGNALS, *_RELOAD_SIGNALS})
    connections = Connections()
    with concurrent.futures.ThreadPoolExecutor(EOM_THREADS, "eom") as executor:

        def may_block() -> bool:
            return PostwardenMilter.view().asks_known

        server = await loop.create_server(
            lambda: MilterConnection(connections, executor, may_block), sock=sock
        )
        log.info("%s started: %s", PROGRAM, address)
        sdnotify.notify("READY=1", f"STATUS=milter on {address}")
        watchdog = _Watchdog(loop, running.watcher)
        await stop.wait()
        log.info("%s stopping", PROGRAM)
        sdnotify.notify("STOPPING=1")
        watchdog.stop()
        server.close()
        connections.stop()
        deadline = loop.time() + STOP_TIMEOUT
        while connections.members and loop.time() < deadline:
            await asyncio.sleep(0.05)


def _reload(watcher: SettingsWatcher) -> None:
    log.info("reload signal: reloading settings and keys")
    watcher.poke()


class _Watchdog:
    """Ping systemd's watchdog from the event loop while the settings watcher lives."""

    def __init__(self, loop: asyncio.AbstractEventLoop, watcher: SettingsWatcher) -> None:
        self._loop, self._watcher = loop, watcher
        self._interval = sdnotify.watchdog_interval() or 0.0
        self._handle: asyncio.TimerHandle | None = None
        if self._interval:
            self._tick()

    def _tick(self) -> None:
        if self._watcher.alive():
            sdnotify.notify("WATCHDOG=1")
        self._handle = self._loop.call_later(self._interval, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()


if __name__ == "__main__":
    sys.exit(main())
