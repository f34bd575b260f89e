"""The state database: migrations, block history, retention."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from postwarden.state.db import BlockEvent, StateDB, StateTooNew
from postwarden.state.migrations import LATEST


def test_new_database_is_migrated_to_latest_in_wal_mode(tmp_path: Path) -> None:
    with StateDB.open(tmp_path / "state") as db:
        assert db.conn.execute("PRAGMA user_version").fetchone()[0] == LATEST
        assert db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert oct((tmp_path / "state").stat().st_mode & 0o777) == "0o750"


def test_a_newer_database_is_refused(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    conn = sqlite3.connect(tmp_path / "state" / "state.db")
    conn.execute(f"PRAGMA user_version = {LATEST + 1}")
    conn.close()
    with pytest.raises(StateTooNew, match=f"version {LATEST + 1}"):
        StateDB.open(tmp_path / "state")


def test_one_row_per_entry_and_client_with_counts(tmp_path: Path) -> None:
    with StateDB.open(tmp_path) as db:
        db.record_blocks(
            [
                BlockEvent("example.com", "203.0.113.0/24", "203.0.113.5", t)
                for t in (100.0, 300.0, 200.0)
            ]
        )
        db.record_blocks([BlockEvent("example.com", "203.0.113.0/24", "203.0.113.6", 50.0)])
        activity = db.entry_activity("example.com")["203.0.113.0/24"]
        assert (activity.last_seen, activity.count, activity.clients) == (300.0, 4, 2)
        assert db.recent_blocks("example.com") == [
            ("203.0.113.0/24", "203.0.113.5", 300.0, 3),
            ("203.0.113.0/24", "203.0.113.6", 50.0, 1),
        ]


def test_retention_by_age_then_by_count(tmp_path: Path) -> None:
    day = 86400.0
    with StateDB.open(tmp_path) as db:
        db.record_blocks(
            [
                BlockEvent("d.example", f"e{i}", "192.0.2.1", 1000 * day - i * day)
                for i in range(200)
            ]
        )
        removed = db.prune(retention_days=150, max_entries=120, now=1000 * day)
        rows = db.conn.execute("SELECT entry FROM block_history ORDER BY last_seen DESC").fetchall()
    assert removed == 80
    assert [r[0] for r in rows] == [f"e{i}" for i in range(120)]
