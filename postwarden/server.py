"""The daemon skeleton every postwarden service shares: listen, reload, stop.

Description:
    A service supplies how to compile its view of a settings snapshot and the asyncio
    protocols to serve; :class:`Daemon` does the rest, the same way for every service:

    - listens on ``inet:HOST:PORT`` (``inet:[::1]:PORT`` for IPv6) or ``unix:PATH``: the
      sockets are opened first (:func:`listen`), then a daemon started as root becomes the
      service user (:func:`drop_privileges`), and only then reads settings or state;
    - loads the settings once at start (a daemon without valid settings does not start),
      then forks its worker processes (:mod:`postwarden.prefork`), which share the
      listening sockets and the compiled settings;
    - in every worker, checks the file every second from a thread and on SIGHUP, compiling
      the new view there — never on the event loop — and publishing it with one assignment;
    - spreads Postfix's long-lived connections evenly over the workers and closes new ones
      past ``--max-connections`` (logged, counted);
    - stops on SIGTERM/SIGINT: closes the listeners, lets requests in flight finish.

Settings read:
    the settings of the store named by ``--store`` (the file named by ``--settings``, or a
    shared database's, cached locally), through
    :class:`~postwarden.settings.source.SnapshotSource`.

Security:
    A ``unix:`` socket gets mode 0660, owned by the service user: give the Postfix user
    access through the socket's group (a setgid directory of group postfix), never through a
    world-writable mode. Listening on a non-loopback ``inet:`` address is logged as a
    warning: neither Postfix's policy protocol nor socketmap authenticates its client.
    Started as root, a daemon keeps root's privileges only until its sockets are open.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import os
import signal
import socket
import stat
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import uvloop

from postwarden import __version__
from postwarden.errors import PostwardenError
from postwarden.prefork import Supervisor, WorkerBoard
from postwarden.settings import paths
from postwarden.settings.snapshot import Snapshot
from postwarden.settings.source import SnapshotSource
from postwarden.store import DaemonLink, Store, open_store, store_url
from postwarden.util import privileges

log = logging.getLogger(__name__)

V = TypeVar("V")

REFRESH_SECONDS = 1.0
SOCKET_MODE = 0o660
BACKLOG = 256
HEARTBEAT_SECONDS = 1.0
DEFER_ACCEPT = 0.002  # seconds a busier worker leaves a new connection to the others
REFUSAL_LOG_EVERY = 10.0


class BadAddress(PostwardenError):
    """Not a listening address (inet:HOST:PORT or unix:PATH)."""


class CannotListen(PostwardenError):
    """A listening socket could not be opened."""


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
        self.on_settings_change = on_settings_change
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
        if settings_changed and self.on_settings_change is not None:
            self.on_settings_change(previous, self.source.current)


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


ProtocolFactory = Callable[[], asyncio.Protocol]


class IdleTimer:
    """Close a connection that has been idle for *timeout* seconds.

    :meth:`touch` on each read only notes the time; the one timer re-arms itself for the
    rest when it fires early, so a busy connection costs no timer operation per read.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, timeout: float, transport: asyncio.BaseTransport
    ) -> None:
        self._loop, self._timeout, self._transport = loop, timeout, transport
        self._last = loop.time()
        self._handle = loop.call_later(timeout, self._check)

    def touch(self) -> None:
        self._last = self._loop.time()

    def cancel(self) -> None:
        self._handle.cancel()

    def _check(self) -> None:
        idle = self._loop.time() - self._last
        if idle >= self._timeout:
            self._transport.close()
        else:
            self._handle = self._loop.call_later(self._timeout - idle, self._check)


class Refusals:
    """Connections closed unanswered past a limit: counted, logged every few seconds."""

    def __init__(self, name: str, limit: int) -> None:
        self._name, self._limit = name, limit
        self._since_log = 0
        self._last_log = 0.0

    def refused(self, now: float) -> None:
        from postwarden import metrics  # metrics imports this module for ListenAddress

        metrics.CONNECTIONS_REFUSED.inc()
        self._since_log += 1
        if now - self._last_log >= REFUSAL_LOG_EVERY:
            log.warning(
                "%s: connection limit %d reached; %d connection(s) closed unanswered",
                self._name,
                self._limit,
                self._since_log,
            )
            self._since_log = 0
            self._last_log = now


class CountedProtocol(asyncio.Protocol):
    """A protocol that tells its listener when its connection ends (for the board)."""

    released: Callable[[], None] | None = None

    def connection_lost(self, exc: Exception | None) -> None:
        release, self.released = self.released, None
        if release is not None:
            release()


@dataclass
class Worker:
    """What one worker process serves: a protocol factory per listener (None: a listener
    this worker leaves to worker 0), what to start on its event loop, and its clean-up."""

    factories: list[ProtocolFactory | None]
    started: Callable[[asyncio.AbstractEventLoop], None] = lambda loop: None
    stop: Callable[[], None] = lambda: None


class Daemon(Generic[V]):
    """Run protocol servers over a published view of the settings until told to stop.

    The parent loads and compiles the settings and binds the listeners; *workers* forked
    processes (:mod:`postwarden.prefork`) then serve them, each with its own event loop and
    settings watcher. ``on_settings_change`` and ``on_settings_refused`` run in worker 0
    only (one report per change; the parent also reports the version it started with).
    """

    def __init__(
        self,
        name: str,
        link: DaemonLink,
        compile_view: Callable[[Snapshot], V],
        *,
        on_settings_change: Callable[[Snapshot, Snapshot], None] | None = None,
        on_settings_refused: Callable[[str], None] | None = None,
        workers: int = 1,
        max_connections: int = 0,
    ) -> None:
        """*link* is the daemon's link to the store (its settings, loaded here)."""
        self.name = name
        self._on_settings_refused = on_settings_refused
        self.source = link.source(on_refused=self._settings_refused)
        self._watcher: SettingsWatcher | None = None  # this worker's, once it serves
        self.published = Published(self.source, compile_view, on_settings_change=on_settings_change)
        self.workers = workers
        self.max_connections = max_connections

    def run(
        self,
        addresses: list[ListenAddress],
        start_worker: Callable[[int], Worker],
        *,
        before_fork: Callable[[], None] = lambda: None,
        first_worker_only: frozenset[int] = frozenset(),
        sockets: list[socket.socket] | None = None,
    ) -> int:
        """Fork the workers (``start_worker(index)`` in each) and serve until SIGTERM.

        *sockets* are the listeners of *addresses*, opened by :func:`listen` before the
        caller dropped its privileges (opened here when not given). The listeners numbered in
        *first_worker_only* are served by worker 0 alone (its ``start_worker`` gives their
        factories; the others give None).
        """
        if sockets is None:
            sockets = [listen(address, self.name) for address in addresses]
        before_fork()
        board = WorkerBoard(self.workers, len(addresses))

        def work(index: int) -> int:
            if index != 0:  # worker 0 reports and counts settings versions, once for all
                self.published.on_settings_change = None
                self._on_settings_refused = None
            worker = start_worker(index)
            try:
                with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                    runner.run(self._serve(index, board, sockets, worker, first_worker_only))
            finally:
                worker.stop()
            return 0

        def remove_socket_files() -> None:
            for address, sock in zip(addresses, sockets, strict=True):
                sock.close()
                if address.path:
                    with contextlib.suppress(OSError):  # gone, or a directory we may not change
                        os.unlink(address.path)

        where = ", ".join(str(a) for a in addresses)
        log.info("%s started: %s, %d worker(s)", self.name, where, self.workers)
        supervisor = Supervisor(
            self.name, self.workers, work, board, on_stopped=remove_socket_files
        )
        return supervisor.run(f"answering on {where}")

    def poke(self) -> None:
        """Look for new settings now, in every worker (a shared store's sync calls this).

        The supervisor passes SIGHUP on to every worker (:mod:`postwarden.prefork`), whose
        watcher then reloads; without a supervisor (it died) this worker's alone.
        """
        parent = os.getppid()
        try:
            if parent == 1:
                raise ProcessLookupError(parent)
            os.kill(parent, signal.SIGHUP)
        except (ProcessLookupError, PermissionError):
            if self._watcher is not None:
                self._watcher.poke()

    def _settings_refused(self, reason: str) -> None:
        if self._on_settings_refused is not None:
            self._on_settings_refused(reason)

    async def _serve(
        self,
        index: int,
        board: WorkerBoard,
        sockets: list[socket.socket],
        worker: Worker,
        first_worker_only: frozenset[int],
    ) -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        watcher = self._watcher = SettingsWatcher(self.published)
        loop.add_signal_handler(signal.SIGHUP, watcher.poke)
        acceptors = [
            BalancedAcceptor(
                loop,
                sock,
                factory,
                board,
                listener,
                index,
                self.max_connections,
                self.name,
                balance=board.workers > 1 and listener not in first_worker_only,
            )
            for listener, (sock, factory) in enumerate(zip(sockets, worker.factories, strict=True))
            if factory is not None
        ]
        worker.started(loop)
        watcher.start()
        beat = _Heartbeat(loop, board, index)
        await stop.wait()
        beat.stop()
        watcher.stop()
        for acceptor in acceptors:
            acceptor.close()


class _Heartbeat:
    """Write the worker's heartbeat from its event loop: a stuck loop stops it."""

    def __init__(self, loop: asyncio.AbstractEventLoop, board: WorkerBoard, index: int) -> None:
        self._loop, self._board, self._index = loop, board, index
        self._handle: asyncio.TimerHandle | None = None
        self._tick()

    def _tick(self) -> None:
        self._board.beat(self._index)
        self._handle = self._loop.call_later(HEARTBEAT_SECONDS, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()


class BalancedAcceptor:
    """Accept on a listening socket shared by every worker, one connection at a time.

    Postfix keeps its connections for minutes, so how they are spread over the workers
    decides how the load is: a worker that already holds more connections on this listener
    than another live worker leaves a new one for that worker for :data:`DEFER_ACCEPT`
    seconds (and takes it after that, should the other be busy). Past *limit* connections
    in all (0: no limit) a new connection is closed at once, logged and counted.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        factory: ProtocolFactory,
        board: WorkerBoard,
        listener: int,
        worker: int,
        limit: int,
        name: str,
        *,
        balance: bool = True,
    ) -> None:
        self._loop = loop
        self._balance = balance
        self._sock = sock
        self._factory = factory
        self._board = board
        self._listener = listener
        self._worker = worker
        self._limit = limit
        self._name = name
        self._waiting: asyncio.TimerHandle | None = None
        self._refusals = Refusals(name, limit)
        self._watching = False
        self._watch()

    def _watch(self) -> None:
        self._waiting = None
        if not self._watching:
            self._loop.add_reader(self._sock.fileno(), self._acceptable)
            self._watching = True

    def _pause(self, seconds: float) -> None:
        if self._watching:
            self._loop.remove_reader(self._sock.fileno())
            self._watching = False
        self._waiting = self._loop.call_later(seconds, self._watch)

    def close(self) -> None:
        if self._waiting is not None:
            self._waiting.cancel()
        if self._watching:
            self._loop.remove_reader(self._sock.fileno())
            self._watching = False

    def _acceptable(self) -> None:
        board, listener, worker = self._board, self._listener, self._worker
        if self._balance and board.busier_than_another(listener, worker, self._loop.time()):
            self._pause(DEFER_ACCEPT)
            return
        try:
            conn, _ = self._sock.accept()
        except (BlockingIOError, InterruptedError):
            return  # another worker took it
        except OSError as exc:  # out of file descriptors and the like: back off
            log.error("%s: cannot accept a connection: %s", self._name, exc)
            self._pause(1.0)
            return
        if self._limit and board.total() >= self._limit:
            conn.close()
            self._refusals.refused(self._loop.time())
            return
        conn.setblocking(False)
        board.add(listener, worker, 1)
        self._loop.create_task(self._start(conn))

    async def _start(self, conn: socket.socket) -> None:
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._board.add(self._listener, self._worker, -1)

        try:
            _, protocol = await self._loop.connect_accepted_socket(self._factory, conn)
        except OSError:
            release()
            conn.close()
            return
        if isinstance(protocol, CountedProtocol):
            protocol.released = release
        else:  # nothing tells us when it ends: do not count it
            release()


def listen(address: ListenAddress, program: str) -> socket.socket:
    """Open a listening socket on *address* now, before privileges are dropped.

    A unix socket gets :data:`SOCKET_MODE` between bind and listen (nobody can connect to a
    socket that does not listen yet, so there is no moment with a wider mode).
    """
    try:
        return _open_listener(address, program)
    except OSError as exc:
        raise CannotListen(f"cannot listen on {address}: {exc.strerror or exc}") from None


def _open_listener(address: ListenAddress, program: str) -> socket.socket:
    if address.path:
        _remove_stale_socket(address.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        where: Any = address.path
    else:
        if not address.is_loopback():
            log.warning(
                "%s listens on %s, which is not loopback: the protocol has no"
                " authentication, restrict access by firewall",
                program,
                address,
            )
        info = socket.getaddrinfo(
            address.host, address.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(info[0], socket.SOCK_STREAM)
        where = info[4]
    try:
        if address.path:
            sock.bind(where)
            os.chmod(address.path, SOCKET_MODE)
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if sock.family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(where)
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


HELD_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}


def hold_signals() -> None:
    """Keep stop and reload signals pending until the daemon handles them.

    Called first thing, before any thread starts (so none ever takes them): the supervisor
    of :mod:`postwarden.prefork` then waits for them. A SIGTERM while the daemon starts up is
    a clean stop right after, not a kill half-way through writing its state.
    """
    signal.pthread_sigmask(signal.SIG_BLOCK, HELD_SIGNALS)


def drop_privileges(user: str, unix_sockets: Iterable[str] = ()) -> None:
    """Started as root: hand *unix_sockets* to *user* and become it for good; else nothing.

    Called once the listeners are open and before anything reads settings or state, so that
    every file the daemon creates is the service user's and a settings file the service user
    cannot read fails at start, as it would under systemd's ``User=``.
    """
    if not privileges.running_as_root():
        return
    account = privileges.account(user)
    for path in unix_sockets:
        privileges.hand_over(path, account)
    privileges.drop_to(account)
    os.umask(0o027)
    log.info("running as %s (uid %d, gid %d)", account.name, account.uid, account.gid)


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
    program: str, description: str, *, metrics: str | None, drops_privileges: bool = True
) -> argparse.ArgumentParser:
    """The options every daemon takes: store, settings, state, metrics, user, logging, version.

    Each daemon adds its listening addresses; ``metrics`` is its default /metrics address
    (None: it has none, as the web console); *drops_privileges*: it takes ``--user`` (see
    :func:`drop_privileges`; the web console runs as the service user only).
    """
    parser = argparse.ArgumentParser(prog=program, description=description)
    parser.add_argument(
        "--store",
        metavar="URL",
        default=store_url(None, os.environ),
        help="file: (the settings file and state directory) or postgresql://... shared by a"
        " fleet (env POSTWARDEN_STORE; default %(default)s)",
    )
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
        help="state directory: this host's state, or with a shared store its cached settings"
        " and buffered state (env POSTWARDEN_STATE_DIR; default %(default)s)",
    )
    if metrics is not None:
        parser.add_argument(
            "--metrics",
            default=metrics,
            metavar="ADDR",
            help="Prometheus /metrics listener, or 'none' (default %(default)s)",
        )
    if drops_privileges:
        parser.add_argument(
            "--user",
            default=paths.SERVICE_USER,
            metavar="NAME",
            help="started as root: become this user once listening (default %(default)s)",
        )
    parser.add_argument("--syslog", action="store_true", help="log to syslog (mail facility)")
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    parser.add_argument("--version", action="version", version=f"{program} {__version__}")
    return parser


def open_daemon_store(args: argparse.Namespace) -> Store:
    """The store the options of :func:`daemon_parser` name."""
    return open_store(args.store, settings_path=args.settings, state_dir=args.state_dir)
