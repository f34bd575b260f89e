"""Worker processes for a daemon: fork after start-up, share the listeners, restart the dead.

Description:
    The parent loads and compiles the settings, binds every listener, then forks the
    workers, so the compiled snapshot (tens of MB for 20,000 IP entries) is shared
    copy-on-write and every worker accepts on the same listening sockets — ``inet:`` and
    ``unix:`` alike (``SO_REUSEPORT`` would cover TCP only, and a dying worker would take
    the connections waiting in its own queue with it). Each worker then runs its own event
    loop and its own settings watcher, so a reload reaches every worker in place and the
    persistent connections Postfix keeps open survive it.

    The parent does nothing per request. It waits for signals: SIGTERM/SIGINT stop the
    workers (they finish what is in flight) and then the parent; SIGHUP is passed to every
    worker; a worker that exits unexpectedly is logged and replaced after
    :data:`RESTART_DELAY` seconds. Workers that stop writing their heartbeat for
    :data:`STUCK_AFTER` seconds are killed and replaced; systemd's watchdog is pinged only
    while every worker is alive. A worker exits when its parent dies (``PR_SET_PDEATHSIG``).

    :class:`WorkerBoard` is the small shared memory the workers use to balance connections
    and enforce the connection limit: a connection count per listener and worker, and a
    heartbeat per worker. Each slot has one writer (its worker; the parent clears a dead
    worker's slots), so no lock is needed.

    The parent's only other thread serves ``/metrics`` (started before the workers are
    forked); it reads the workers' metric files and holds no lock a worker needs.

Security:
    Privileges are dropped (when the daemon starts as root) after the listeners are bound
    and before :meth:`Supervisor.run` forks: every worker runs unprivileged.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import mmap
import os
import signal
import time
from collections.abc import Callable

from postwarden.util import sdnotify

log = logging.getLogger(__name__)

RESTART_DELAY = 1.0
STUCK_AFTER = 60.0
STOP_TIMEOUT = 10.0
_SIGNALS = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
_PR_SET_PDEATHSIG = 1


class WorkerBoard:
    """Connection counts per (listener, worker) and a heartbeat per worker, shared."""

    def __init__(self, workers: int, listeners: int) -> None:
        self.workers = workers
        self.listeners = listeners
        size = 8 * (workers * listeners + workers)
        self._memory = mmap.mmap(-1, size)  # MAP_SHARED | MAP_ANONYMOUS: survives fork()
        self._counts = memoryview(self._memory)[: 8 * workers * listeners].cast("q")
        self._beats = memoryview(self._memory)[8 * workers * listeners :].cast("d")

    def add(self, listener: int, worker: int, delta: int) -> None:
        self._counts[listener * self.workers + worker] += delta

    def count(self, listener: int, worker: int) -> int:
        return int(self._counts[listener * self.workers + worker])

    def total(self) -> int:
        return int(sum(self._counts))

    def busier_than_another(self, listener: int, worker: int, now: float) -> bool:
        """Whether another live worker has fewer connections on *listener* than *worker*."""
        mine = self.count(listener, worker)
        return any(
            self.count(listener, other) < mine and self.alive(other, now)
            for other in range(self.workers)
            if other != worker
        )

    def beat(self, worker: int) -> None:
        self._beats[worker] = time.monotonic()

    def alive(self, worker: int, now: float, within: float = 5.0) -> bool:
        return now - self._beats[worker] < within

    def last_beat(self, worker: int) -> float:
        return float(self._beats[worker])

    def clear(self, worker: int) -> None:
        """Forget a dead worker: its connections are gone, it is not alive."""
        for listener in range(self.listeners):
            self._counts[listener * self.workers + worker] = 0
        self._beats[worker] = 0.0


class Supervisor:
    """Fork *count* workers running ``work(index)``; keep them running until told to stop.

    ``work`` returns the worker's exit status; it runs in the child with the signals this
    class uses unblocked and must stop on SIGTERM. ``on_stopped`` runs in the parent once
    every worker has exited (remove socket files and the like).
    """

    def __init__(
        self,
        name: str,
        count: int,
        work: Callable[[int], int],
        board: WorkerBoard,
        *,
        on_stopped: Callable[[], None] = lambda: None,
    ) -> None:
        self.name = name
        self.count = count
        self.work = work
        self.board = board
        self.on_stopped = on_stopped
        self.pids: dict[int, int] = {}  # pid -> worker index
        self._restart_at: dict[int, float] = {}  # worker index -> when
        self._stopping = False
        self._kill_after = float("inf")

    def run(self, ready_status: str) -> int:
        """Fork the workers and supervise them; return when they have all stopped."""
        signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        for index in range(self.count):
            self._spawn(index)
        sdnotify.notify("READY=1", f"STATUS={ready_status} ({self.count} workers)")
        interval = sdnotify.watchdog_interval()
        next_ping = 0.0
        while self.pids or (not self._stopping and self._restart_at):
            info = signal.sigtimedwait(_SIGNALS, 0.5)
            if info is not None:
                self._on_signal(info.si_signo)
            self._reap()
            now = time.monotonic()
            if not self._stopping:
                self._restart_due(now)
                self._kill_stuck(now)
            if interval and now >= next_ping and self._all_alive(now):
                sdnotify.notify("WATCHDOG=1")
                next_ping = now + interval
        self.on_stopped()
        log.info("%s stopped", self.name)
        return 0

    def _spawn(self, index: int) -> None:
        self.board.clear(index)
        self.board.beat(index)  # alive from birth: it gets its share of new connections
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the worker
            status = 1
            try:
                _die_with_parent(parent)
                signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until the worker's own handler
                signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
                status = self.work(index)
            except BaseException:
                log.exception("%s worker %d failed", self.name, index)
            finally:
                logging.shutdown()
                os._exit(status)
        self.pids[pid] = index
        log.info("%s worker %d started (pid %d)", self.name, index, pid)

    def _on_signal(self, signo: int) -> None:
        if signo in (signal.SIGTERM, signal.SIGINT) and not self._stopping:
            log.info("%s stopping", self.name)
            sdnotify.notify("STOPPING=1")
            self._stopping = True
            self._restart_at.clear()
            self._signal_all(signal.SIGTERM)
            self._kill_after = time.monotonic() + STOP_TIMEOUT
        elif signo == signal.SIGHUP:
            log.info("SIGHUP: reloading settings in every worker")
            self._signal_all(signal.SIGHUP)

    def _signal_all(self, signo: int) -> None:
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signo)

    def _reap(self) -> None:
        while self.pids:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.pids.clear()
                return
            if pid == 0:
                break
            index = self.pids.pop(pid, None)
            if index is None:
                continue
            self.board.clear(index)
            if self._stopping:
                continue
            log.error(
                "%s worker %d (pid %d) exited unexpectedly (%s); restarting it",
                self.name,
                index,
                pid,
                _describe(status),
            )
            self._restart_at[index] = time.monotonic() + RESTART_DELAY
        if self._stopping and self.pids and time.monotonic() > self._kill_after:
            self._signal_all(signal.SIGKILL)

    def _restart_due(self, now: float) -> None:
        for index, when in list(self._restart_at.items()):
            if now >= when:
                del self._restart_at[index]
                self._spawn(index)

    def _kill_stuck(self, now: float) -> None:
        for pid, index in self.pids.items():
            if now - self.board.last_beat(index) > STUCK_AFTER:
                log.error("%s worker %d (pid %d) is stuck; killing it", self.name, index, pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                self.board.beat(index)  # once: the reaper restarts it

    def _all_alive(self, now: float) -> bool:
        return len(self.pids) == self.count and all(
            self.board.alive(index, now, STUCK_AFTER) for index in self.pids.values()
        )


def _die_with_parent(parent: int) -> None:
    """Ask the kernel for SIGTERM when the parent dies (Linux); elsewhere do without."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {signal.Signals(os.WTERMSIG(status)).name}"
    return f"status {os.waitstatus_to_exitcode(status)}"
