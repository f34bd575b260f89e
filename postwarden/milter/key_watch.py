"""The DKIM key watch, run by postwarden-milter in a thread of its own.

Description:
    Why the milter: it is the process that signs, and it already reloads its keys from the
    state database when they change (:class:`~postwarden.milter.keyring.KeyRing` notices a
    commit within a second), so a key the watch activates or marks failing changes what is
    signed without any other plumbing — and a site that runs no milter signs nothing and
    needs no watch. policyd answers every RCPT from memory and is being spread over worker
    processes; a DNS client there would need one elected worker and would compete with the
    request path for its event loop.

    Here the watch never touches a request: the connections run on the event loop and read
    only the published view. This thread opens the
    store's state for each round (the SQLite state database, or a fleet's database: every
    node's watch checks the same keys, and a key activated by one is signed with by all),
    does its DNS (blocking, with the ``dns.timeout`` of the
    settings; DNS I/O releases the GIL) and sleeps until the next key is due, waking at
    least every minute to see keys created meanwhile. The rules of *when* and *what follows*
    are :mod:`postwarden.dkim.watch`'s; the check is :func:`~postwarden.milter.dkim_probe.
    authenticate`: the record against the key, then a real signature verified by dkimpy.

Settings read:
    ``dkim_watch.*``, ``dns.nameserver``, ``dns.timeout``.

Errors:
    A database or key-file problem is logged (rate-limited by the sleep) and retried; it
    never stops the milter.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from postwarden import metrics
from postwarden.dkim.keys import BadKey
from postwarden.dkim.store import DkimKeys, KeyRow
from postwarden.dkim.watch import CheckResult, Finding, KeyWatch
from postwarden.milter.dkim_probe import authenticate
from postwarden.settings.model import Settings
from postwarden.state.db import STATE_ERRORS, StateDB
from postwarden.store import Store

log = logging.getLogger("postwarden.milter")

MAX_SLEEP = 60.0
MIN_SLEEP = 0.5
ERROR_SLEEP = 30.0


class KeyWatchThread:
    def __init__(self, store: Store, settings: Callable[[], Settings]) -> None:
        self.store = store
        self.settings = settings
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dkim-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def check(self, row: KeyRow) -> CheckResult:
        """The record and a real signature, through DNS; see dkim_probe.authenticate."""
        settings = self.settings()
        try:
            key = self.store.read_key(row.domain, row.selector)
        except (*STATE_ERRORS, OSError, BadKey) as exc:
            return CheckResult(Finding.UNSURE, f"key file not readable: {exc}")
        verdict = authenticate(
            row.domain,
            row.selector,
            key,
            nameserver=settings.dns.nameserver or None,
            timeout=settings.dns.timeout,
        )
        if verdict.ok:
            return CheckResult(Finding.VERIFIED, verdict.summary)
        if verdict.dns_error:
            return CheckResult(Finding.UNSURE, verdict.summary)
        return CheckResult(Finding.WRONG, verdict.summary)

    def _run(self) -> None:
        while not self._stop.is_set():
            cadence = self.settings().dkim_watch
            wait = min(MAX_SLEEP, cadence.pending_first_check)
            try:
                if cadence.enabled:
                    with self.store.state(create=False) as db:
                        if db is not None:
                            wait = self._round(db, wait)
            except (*STATE_ERRORS, OSError) as exc:
                log.error("DKIM key watch: state database: %s; retrying", exc)
                wait = ERROR_SLEEP
            self._stop.wait(wait)

    def _round(self, db: StateDB, longest: float) -> float:
        keys = DkimKeys(db)
        watch = KeyWatch(keys, self.check, lambda: self.settings().dkim_watch)
        for step in watch.run_due(time.time()):
            metrics.DKIM_KEY_CHECKS.labels(step.event.value).inc()
        failing = sum(1 for row in keys.watched() if row.failing is not None)
        metrics.DKIM_KEYS_FAILING.set(failing)
        upcoming = watch.next_due()
        if upcoming is None:
            return longest
        return max(MIN_SLEEP, min(longest, upcoming - time.time()))
