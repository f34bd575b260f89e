"""Write what the daemons learn to the state database without ever delaying an answer.

Description:
    The request path only puts an event on a bounded queue (``put_nowait``): a
    :class:`~postwarden.state.db.BlockEvent` (a blocked recipient), an
    :class:`UnknownRecipient` (a recipient Postfix did not know, accepted for a route), or a
    :class:`~postwarden.state.activity.DecisionRecord` (for ``what-if``); on each
    settings load the daemon adds a :class:`~postwarden.state.activity.ListedEntries`.
    A worker thread writes them in batches, one transaction per kind and batch, and applies
    the retention limits once an hour. Several processes may each run a writer (policyd's
    workers, the milter): SQLite's locking (WAL, busy timeout) serialises their
    transactions, and batching keeps them few. A full queue or a failing database (disk full,
    permissions) drops events and logs it — rate-limited — while answers go on. Decision
    records are the first to go: once the queue is three-quarters full they are dropped
    (counted in :attr:`StateWriter.dropped_decisions`), so a flood never costs a block record.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from postwarden.settings.model import BlockHistory, DecisionLog
from postwarden.state import activity
from postwarden.state.activity import DecisionRecord, ListedEntries
from postwarden.state.db import STATE_ERRORS, BlockEvent, StateDB

log = logging.getLogger(__name__)

# Short transactions, often: each batch is a burst of CPU (rows built, pages written) on a
# core the answers share, and an answer that arrives during one waits for it to end. With
# 50 ms gathered (some 250 decisions a worker at 10,000 requests/s) one policy answer in a
# hundred waited 2-4 ms; with 5 ms, 1.1-1.5 ms (tests/bench/bench_policyd.py, 2 cores).
BATCH = 100
GATHER = 0.005  # seconds a lone event waits for company
PRUNE_EVERY = 3600.0
ERROR_LOG_EVERY = 60.0


@dataclass(frozen=True)
class UnknownRecipient:
    address: str
    when: float


Event = BlockEvent | UnknownRecipient | DecisionRecord | ListedEntries


class StateWriter:
    """A bounded queue in front of a writer thread."""

    batch = BATCH  # events a transaction takes at most
    gather = GATHER  # seconds a lone event waits for company

    def __init__(
        self,
        state_dir: Path,
        limits: Callable[[], BlockHistory],
        *,
        max_queue: int = 10_000,
        decision_log: Callable[[], DecisionLog] = DecisionLog,
    ) -> None:
        self.state_dir = state_dir
        self.limits = limits
        self.decision_log = decision_log
        self.dropped = 0
        self.dropped_decisions = 0
        self._decision_room = max_queue * 3 // 4
        self.written = 0
        self._queue: queue.Queue[Event | None] = queue.Queue(max_queue)
        self._thread = threading.Thread(target=self._run, name="state-writer", daemon=True)
        self._last_error_log = 0.0

    def start(self) -> None:
        self._thread.start()

    def record(self, event: Event) -> None:
        """Queue *event*; never blocks."""
        if isinstance(event, DecisionRecord) and self._queue.qsize() >= self._decision_room:
            self.dropped_decisions += 1
            return
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.dropped += 1

    def stop(self, timeout: float = 5.0) -> None:
        """Write what is queued, then stop the thread."""
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)

    def _run(self) -> None:
        db: StateDB | None = None
        next_prune = 0.0
        while True:
            batch = self._next_batch()
            stopping = None in batch
            events = [e for e in batch if e is not None]
            try:
                if db is None:
                    db = StateDB.open(self.state_dir)
                self._write(db, events)
                self.written += len(events)
                if time.monotonic() >= next_prune:
                    self._prune(db)
                    next_prune = time.monotonic() + PRUNE_EVERY
            except (*STATE_ERRORS, OSError) as exc:
                self.dropped += len(events)
                self._log_error(exc)
                if db is not None:
                    db.close()
                    db = None
            if stopping:
                break
        if db is not None:
            db.close()

    def _prune(self, db: StateDB) -> None:
        limits, log_limits = self.limits(), self.decision_log()
        db.prune(
            retention_days=limits.retention_days,
            max_entries=limits.max_entries,
            max_attempts=limits.max_attempts,
        )
        activity.prune_decisions(
            db, cutoff=time.time() - log_limits.retention_hours * 3600, keep=log_limits.max_entries
        )

    def _write(self, db: StateDB, events: list[Event]) -> None:
        """Write one batch (in the writer thread); a shared store sends most of it elsewhere."""
        db.record_blocks(e for e in events if isinstance(e, BlockEvent))
        db.record_unknown((e.address, e.when) for e in events if isinstance(e, UnknownRecipient))
        activity.record_decisions(db, (e for e in events if isinstance(e, DecisionRecord)))
        for listed in (e for e in events if isinstance(e, ListedEntries)):
            activity.note_listed(db, listed)

    def _next_batch(self) -> list[Event | None]:
        """The next events to write: all that wait, up to BATCH; a short wait to gather more.

        Under load each transaction takes a full batch; when events trickle in, up to
        :data:`GATHER` seconds' worth share one transaction — writers of several processes
        share the database's lock, and each transaction takes it once. An unknown recipient
        is written at once: the milter looks for it at the end of the same message.
        """
        batch = [self._queue.get()]
        self._drain(batch)
        if (
            len(batch) < self.batch
            and batch[-1] is not None
            and not any(isinstance(e, UnknownRecipient) for e in batch)
        ):
            time.sleep(self.gather)  # the milter may look for an unknown recipient at once
            self._drain(batch)
        return batch

    def _drain(self, batch: list[Event | None]) -> None:
        while len(batch) < self.batch and batch[-1] is not None:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                return

    def _log_error(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._last_error_log >= ERROR_LOG_EVERY:
            self._last_error_log = now
            log.error("state not recorded (%s events dropped so far): %s", self.dropped, exc)
