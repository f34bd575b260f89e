"""Which blocked-list entries have blocked nothing for a number of days, when history can tell.

Description:
    An entry is *unused for DAYS* only if all of these hold, so that ``postwarden block
    prune`` never deletes an entry on too little evidence:

    - no block by it is recorded in the last DAYS (``block_history``, per entry);
    - policyd has enforced it for at least DAYS (``listed_entries``: an entry added
      yesterday has had no chance to block anything);
    - the history reaches back DAYS: ``block_history.retention_days`` is at least DAYS,
      recording began at least DAYS ago (``state_meta.recording_since``), and the totals
      table has not hit ``max_entries`` with rows newer than DAYS (the cap drops the oldest
      rows, which might have been this entry's).

    Every entry gets a verdict with the reason when it is kept.

Settings read:
    ``domains.DOMAIN.blocked_ips``, ``block_history.*``.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from postwarden.settings.model import Settings
from postwarden.state import activity
from postwarden.state.db import StateDB

DAY = 86400.0


@dataclass(frozen=True)
class PruneVerdict:
    entry: str
    unused: bool
    reason: str = ""


def _date(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp).astimezone().isoformat(timespec="minutes")


def history_gap(db: StateDB, settings: Settings, days: int, now: float) -> str | None:
    """Why the block history cannot tell about the last *days*, or None when it can."""
    limits = settings.block_history
    if limits.retention_days < days:
        return f"block_history.retention_days is {limits.retention_days}: older blocks are gone"
    since = activity.recording_since(db)
    if since > now - days * DAY:
        return f"blocks have been recorded only since {_date(since)}"
    rows, oldest = db.conn.execute("SELECT count(*), min(last_seen) FROM block_history").fetchone()
    if rows >= limits.max_entries and oldest is not None and oldest > now - days * DAY:
        return f"the block history is full (max_entries {limits.max_entries:,}) with newer rows"
    return None


def unused_entries(
    db: StateDB, settings: Settings, domain: str, days: int, *, now: float
) -> list[PruneVerdict]:
    """A verdict for every entry of *domain*'s own ``blocked_ips``."""
    block = settings.domains.get(domain)
    entries = [e.text for e in block.blocked_ips] if block else []
    gap = history_gap(db, settings, days, now)
    if gap is not None:
        return [PruneVerdict(e, False, f"history cannot tell: {gap}") for e in entries]
    cutoff = now - days * DAY
    last = {e: a.last_seen for e, a in db.entry_activity(domain).items()}
    listed = activity.listed_since(db, domain, "blocked_ips")
    verdicts = []
    for entry in entries:
        if last.get(entry, 0.0) >= cutoff:
            verdicts.append(PruneVerdict(entry, False, f"blocked on {_date(last[entry])}"))
        elif entry not in listed:
            verdicts.append(PruneVerdict(entry, False, "policyd has not enforced it yet"))
        elif listed[entry] > cutoff:
            verdicts.append(PruneVerdict(entry, False, f"listed only since {_date(listed[entry])}"))
        else:
            verdicts.append(PruneVerdict(entry, True))
    return verdicts
