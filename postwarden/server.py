"""The daemon skeleton every postwarden service shares: listen, reload, stop.

Description:
    A service supplies how to compile its view of a settings snapshot and the asyncio
    protocols to serve; :class:`Daemon` does the rest, the same way for every service:

    - listens on ``inet:HOST:PORT`` (``inet:[::1]:PORT`` for IPv6) or ``unix:PATH``;
    - loads the settings once at start (a daemon without valid settings does not start),
      then checks the file every second from a worker thread and on SIGHUP, compiling the
      new view there — never on the event loop — and publishing it with one assignment;
    - stops on SIGTERM/SIGINT: closes the listeners, lets requests in flight finish.

Settings read:
    the settings file named by ``--settings`` (through
    :class:`~postwarden.settings.source.SnapshotSource`).

Security:
    A ``unix:`` socket is created with mode 0660 (``--socket-mode``): give the Postfix user
    access through the socket's group, never through a world-writable mode. Listening on a
    non-loopback ``inet:`` address is logged as a warning: neither Postfix's policy protocol
    nor socketmap authenticates its client.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import os
import signal
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from postwarden import __version__
from postwarden.errors import PostwardenError
from postwarden.settings import paths
from postwarden.settings.snapshot import Snapshot
from postwarden.settings.source import SnapshotSource
from postwarden.util import sdnotify

log = logging.getLogger(__name__)

V = TypeVar("V")

REFRESH_SECONDS = 1.0


class BadAddress(PostwardenError):
    """Not a listening address (inet:HOST:PORT or unix:PATH)."""


@dataclass(frozen=True)
class ListenAddress:
    """``inet:HOST:PORT`` or ``unix:PATH``, as Postfix writes them."""

    host: str = ""
    port: int = 0
    path: str = ""

    @classmethod
    def parse(cls, text: str) -> ListenAddress:
        kind, _, rest = text.partition(":")
        if kind == "unix" and rest.startswith("/"):
            return cls(path=rest)
        if kind == "inet":
            host, _, port = rest.rpartition(":")
            host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
            if host and port.isdigit() and 0 < int(port) < 65536:
                return cls(host=host, port=int(port))
        raise BadAddress(f"{text!r} is not inet:HOST:PORT or unix:/PATH")

    def __str__(self) -> str:
        if self.path:
            return f"unix:{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"inet:{host}:{self.port}"

    def is_loopback(self) -> bool:
        if self.path:
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return self.host == "localhost"


class Published(Generic[V]):
    """A value compiled from the current snapshot, replaced whole on each reload.

    *also_changed* lets a service recompile for reasons outside the settings file (the
    milter's DKIM keys live in the state database); it is polled with every refresh.
    """

    def __init__(
        self,
        source: SnapshotSource,
        compile_view: Callable[[Snapshot], V],
        *,
        also_changed: Callable[[], bool] | None = None,
        on_settings_change: Callable[[Snapshot, Snapshot], None] | None = None,
    ) -> None:
        self.source = source
        self._compile = compile_view
        self._also_changed = also_changed
        self._on_settings_change = on_settings_change
        self.value: V = compile_view(source.current)
        self.reloads = 0

    def refresh(self, *, force: bool = False) -> None:
        """Recompile if the settings (or anything else the view depends on) changed."""
        previous = self.source.current
        settings_changed = self.source.refresh(force=force)
        also = self._also_changed is not None and self._also_changed()
        if settings_changed or also or force:
            self.value = self._compile(self.source.current)
            self.reloads += 1
        if settings_changed and self._on_settings_change is not None:
            self._on_settings_change(previous, self.source.current)


class SettingsWatcher:
    """Refresh a :class:`Published` every second from its own thread; at once on poke()."""

    def __init__(self, published: Published[Any]) -> None:
        self.published = published
        self._wake = threading.Event()
        self._force = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="settings-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def poke(self) -> None:
        """Reload now, even if nothing seems to have changed (SIGHUP)."""
        self._force.set()
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(REFRESH_SECONDS)
            self._wake.clear()
            force = self._force.is_set()
            self._force.clear()
            try:
                self.published.refresh(force=force)
            except Exception:  # a bug in compiling must not stop future reloads
                log.exception("settings reload failed; keeping the last good settings")


class Daemon(Generic[V]):
    """Run protocol servers over a published view of the settings until told to stop."""

    def __init__(
        self,
        name: str,
        settings_path: Path,
        compile_view: Callable[[Snapshot], V],
        *,
        socket_mode: int = 0o660,
        on_settings_change: Callable[[Snapshot, Snapshot], None] | None = None,
        on_settings_refused: Callable[[str], None] | None = None,
    ) -> None:
        self.name = name
        self.source = SnapshotSource(settings_path, on_refused=on_settings_refused)
        self.source.load()
        self.published = Published(self.source, compile_view, on_settings_change=on_settings_change)
        self.watcher = SettingsWatcher(self.published)
        self.socket_mode = socket_mode

    def run(self, servers: list[tuple[ListenAddress, Callable[[], asyncio.Protocol]]]) -> None:
        """Serve until SIGTERM/SIGINT."""
        asyncio.run(self._main(servers))

    async def _main(
        self, servers: list[tuple[ListenAddress, Callable[[], asyncio.Protocol]]]
    ) -> None:
        loop = asyncio.get_running_loop()
        listeners = [await self._listen(address, factory) for address, factory in servers]
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload_now)
        self.watcher.start()
        where = ", ".join(str(a) for a, _ in servers)
        log.info("%s started: %s", self.name, where)
        sdnotify.notify("READY=1", f"STATUS=answering on {where}")
        interval = sdnotify.watchdog_interval()
        if interval:
            self._keep_alive(loop, interval)
        await stop.wait()
        log.info("%s stopping", self.name)
        sdnotify.notify("STOPPING=1")
        self.watcher.stop()
        for listener in listeners:
            listener.close()
        for listener in listeners:
            await listener.wait_closed()
        for address, _ in servers:
            if address.path:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(address.path)

    def _keep_alive(self, loop: asyncio.AbstractEventLoop, interval: float) -> None:
        """Ping systemd's watchdog from the event loop itself: a stuck loop stops the pings."""
        sdnotify.notify("WATCHDOG=1")
        loop.call_later(interval, self._keep_alive, loop, interval)

    def _reload_now(self) -> None:
        log.info("SIGHUP: reloading settings")
        self.watcher.poke()

    async def _listen(
        self, address: ListenAddress, factory: Callable[[], asyncio.Protocol]
    ) -> asyncio.Server:
        loop = asyncio.get_running_loop()
        if address.path:
            _remove_stale_socket(address.path)
            server = await loop.create_unix_server(factory, address.path)
            os.chmod(address.path, self.socket_mode)
            return server
        if not address.is_loopback():
            log.warning(
                "%s listens on %s, which is not loopback: the protocol has no"
                " authentication, restrict access by firewall",
                self.name,
                address,
            )
        return await loop.create_server(factory, address.host, address.port, reuse_address=True)


def _remove_stale_socket(path: str) -> None:
    """Remove a socket left by a previous run; refuse to remove anything else."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise BadAddress(f"{path} exists and is not a socket")
    os.unlink(path)


def daemon_parser(
    program: str, description: str, *, metrics: str | None
) -> argparse.ArgumentParser:
    """The options every daemon takes: settings, state, metrics, logging, version.

    Each daemon adds its listening addresses; ``metrics`` is its default /metrics address
    (None: it has none, as the web console).
    """
    parser = argparse.ArgumentParser(prog=program, description=description)
    parser.add_argument(
        "--settings",
        type=Path,
        default=paths.settings_path(None, os.environ),
        help="settings file (env POSTWARDEN_SETTINGS; default %(default)s)",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=paths.state_dir(None, os.environ),
        help="state directory (env POSTWARDEN_STATE_DIR; default %(default)s)",
    )
    if metrics is not None:
        parser.add_argument(
            "--metrics",
            default=metrics,
            metavar="ADDR",
            help="Prometheus /metrics listener, or 'none' (default %(default)s)",
        )
    parser.add_argument("--syslog", action="store_true", help="log to syslog (mail facility)")
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    parser.add_argument("--version", action="version", version=f"{program} {__version__}")
    return parser
