"""The DKIM key watch: when each key is checked in DNS again, and what a result changes.

Description:
    A key's DNS record can appear after ``dkim create`` (the administrator publishes it
    hours later) and can disappear or change under a signing key (a zone edit, a DNS
    provider migration). The watch re-checks, without an administrator:

    ``pending`` keys  first ``dkim_watch.pending_first_check`` seconds after creation, then
                      with doubling intervals up to ``pending_max_interval``, for
                      ``pending_for_hours`` (72 h: as long as DNS changes may take). A check
                      that verifies activates the key exactly as ``dkim verify`` does
                      (the previous active key is retired). Then the watch gives up,
                      logged once; ``status`` says so.
    ``active`` keys   every ``active_interval`` (a day). A record found missing, different
                      or revoked — or a signature that dkimpy does not verify against it —
                      marks the key ``failing``: the milter stops signing with it and falls
                      back to the primary domain's key (the seed's rule), ``status`` warns,
                      the milter counts it and logs it. A failing key is checked every
                      ``failing_interval`` and signs again once it verifies.
    DNS errors        (timeouts, SERVFAIL) prove nothing: the key keeps its state, the check
                      is repeated sooner (doubling from ``failing_interval`` up to the key's
                      normal interval), and a warning is logged.

    The check itself is injected (:data:`Checker`): the milter's host
    (:mod:`postwarden.milter.key_watch`) checks the record and then has dkimpy verify a
    real signature made by the milter's signer. This module decides only *when* and *what
    follows*, so its rules are tested without DNS.

Settings read:
    ``dkim_watch.*``.

Errors:
    ``sqlite3.Error`` from the key table reaches the caller (the host logs it and retries).
"""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

from postwarden.dkim.store import DkimKeys, KeyRow, Status
from postwarden.settings.model import DkimWatch

log = logging.getLogger(__name__)


class Finding(enum.Enum):
    """How a check came out, in the three ways that matter to the watch."""

    VERIFIED = "verified"  # record matches and a real signature verifies
    WRONG = "wrong"  # missing, different, revoked, or the signature fails
    UNSURE = "unsure"  # DNS error: nothing learned


@dataclass(frozen=True)
class CheckResult:
    finding: Finding
    summary: str  # e.g. "missing: a._domainkey.example.com does not exist (NXDOMAIN)"


Checker = Callable[[KeyRow], CheckResult]


class Event(enum.Enum):
    ACTIVATED = "activated"
    STILL_PENDING = "still-pending"
    GAVE_UP = "gave-up"
    VERIFIED = "verified"
    FAILING = "failing"  # newly found wrong
    STILL_FAILING = "still-failing"
    RECOVERED = "recovered"
    DNS_ERROR = "dns-error"


@dataclass(frozen=True)
class Step:
    """One check the watch made and what followed."""

    key: KeyRow
    result: CheckResult
    event: Event
    next_check: float


def deadline(row: KeyRow, cadence: DkimWatch) -> float:
    """Until when a pending key is re-checked."""
    return row.created + cadence.pending_for_hours * 3600


def due(row: KeyRow, cadence: DkimWatch) -> float | None:
    """When *row* should be checked next; None when the watch no longer checks it."""
    if row.status is Status.PENDING:
        when = row.next_check or row.created + cadence.pending_first_check
        return when if when <= deadline(row, cadence) else None
    if row.status is Status.ACTIVE:
        last = row.last_check or row.verified or row.created
        return row.next_check or last + cadence.active_interval
    return None


def _backoff(first: float, failures: int, ceiling: float) -> float:
    return min(first * 2 ** min(failures, 30), ceiling)


def _after_pending(row: KeyRow, result: CheckResult, cadence: DkimWatch, now: float) -> Step:
    failures = row.failures + 1
    limit = deadline(row, cadence)
    if now >= limit:
        return Step(row, result, Event.GAVE_UP, math.inf)
    wait = _backoff(cadence.pending_first_check, failures - 1, cadence.pending_max_interval)
    return Step(row, result, Event.STILL_PENDING, min(now + wait, limit))


def _after_active(row: KeyRow, result: CheckResult, cadence: DkimWatch, now: float) -> Step:
    if result.finding is Finding.VERIFIED:
        event = Event.RECOVERED if row.failing is not None else Event.VERIFIED
        return Step(row, result, event, now + cadence.active_interval)
    if result.finding is Finding.WRONG:
        event = Event.STILL_FAILING if row.failing is not None else Event.FAILING
        return Step(row, result, event, now + cadence.failing_interval)
    ceiling = cadence.failing_interval if row.failing is not None else cadence.active_interval
    wait = _backoff(cadence.failing_interval, row.failures, max(ceiling, cadence.failing_interval))
    return Step(row, result, Event.DNS_ERROR, now + wait)


class KeyWatch:
    """Check every due key once (:meth:`run_due`); say when the next one is due."""

    def __init__(self, keys: DkimKeys, check: Checker, cadence: Callable[[], DkimWatch]) -> None:
        self.keys = keys
        self.check = check
        self.cadence = cadence

    def next_due(self) -> float | None:
        cadence = self.cadence()
        times = [t for row in self.keys.watched() if (t := due(row, cadence)) is not None]
        return min(times, default=None)

    def run_due(self, now: float) -> list[Step]:
        cadence = self.cadence()
        steps = []
        for row in self.keys.watched():
            when = due(row, cadence)
            if when is None or when > now:
                continue
            step = self._check(row, cadence, now)
            if step is not None:
                steps.append(step)
        return steps

    def _check(self, row: KeyRow, cadence: DkimWatch, now: float) -> Step | None:
        result = self.check(row)
        current = self.keys.get(row.domain, row.selector)
        if current is None or (current.status, current.created) != (row.status, row.created):
            return None  # changed meanwhile (dkim verify, delete): its new state stands
        if row.status is Status.PENDING and result.finding is Finding.VERIFIED:
            self.keys.activate(row.domain, row.selector, f"ok: {result.summary} (key watch)")
            step = Step(row, result, Event.ACTIVATED, now + cadence.active_interval)
            _log(step)
            return step
        if row.status is Status.PENDING:
            step = _after_pending(row, result, cadence, now)
        else:
            step = _after_active(row, result, cadence, now)
        failing = row.failing
        if step.event is Event.FAILING:
            failing = now
        elif step.event is Event.RECOVERED:
            failing = None
        failures = 0 if result.finding is Finding.VERIFIED else row.failures + 1
        self.keys.note_watch(
            row.domain,
            row.selector,
            f"{result.summary} (key watch)",
            next_check=step.next_check,
            failures=failures,
            failing=failing,
            now=now,
        )
        _log(step)
        return step


_MESSAGES = {
    Event.ACTIVATED: (logging.INFO, "now signs with selector {s}: {r}"),
    Event.STILL_PENDING: (logging.INFO, "pending key {s} not verified yet: {r}"),
    Event.GAVE_UP: (
        logging.WARNING,
        "pending key {s} did not verify within the watch's time; publish its record and run"
        " `postwarden dkim verify`: {r}",
    ),
    Event.VERIFIED: (logging.INFO, "key {s} still verifies"),
    Event.FAILING: (
        logging.WARNING,
        "key {s} no longer verifies, signing falls back to the primary domain's key: {r}",
    ),
    Event.STILL_FAILING: (logging.WARNING, "key {s} still does not verify: {r}"),
    Event.RECOVERED: (logging.INFO, "key {s} verifies again and signs: {r}"),
    Event.DNS_ERROR: (logging.WARNING, "key {s} not checked (kept as it is): {r}"),
}


def _log(step: Step) -> None:
    level, text = _MESSAGES[step.event]
    log.log(
        level,
        "DKIM %s: %s",
        step.key.domain,
        text.format(s=repr(step.key.selector), r=step.result.summary),
    )
