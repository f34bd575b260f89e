"""The node's spool: a row per batch and kind, counted in events, bounded, readable when old."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest

from postwarden.state.activity import DecisionRecord
from postwarden.state.db import BlockEvent
from postwarden.store.pg import spool
from postwarden.store.pg.spool import Spool


def _block(number: int) -> BlockEvent:
    return BlockEvent("example.com", "203.0.113.0/24", f"203.0.113.{number}", 1.0 + number)


def _decision(number: int) -> DecisionRecord:
    return DecisionRecord(
        2.0 + number, "198.51.100.1", "a@sender.example", f"b{number}@example.com", False,
        "", "DUNNO", "none", "example.com", "", "abcdef012345",
    )  # fmt: skip


def test_a_batch_is_one_row_per_kind_and_counted_in_events(tmp_path: Path) -> None:
    with contextlib.closing(Spool.open(tmp_path)) as box:
        assert box.add([_block(1), _decision(1), _block(2), _decision(2), _decision(3)]) == 0
        rows = box.pending()
        assert [(kind, n) for _seq, kind, _line, n in rows] == [("block", 2), ("decision", 3)]
        block_lines = rows[0][2].splitlines()
        assert [line.split("\t")[3] for line in block_lines] == ["203.0.113.1", "203.0.113.2"]
        assert box.backlog() == 5
        box.add([_block(3)])
        assert len(box.pending(limit=2)) == 1  # rows up to the limit in events, at least one
        assert len(box.pending(limit=3)) == 2
        box.forget(rows[-1][0])
        assert box.backlog() == 1


def test_a_full_spool_keeps_blocks_before_decisions_and_counts_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spool, "MAX_EVENTS", 4)
    with contextlib.closing(Spool.open(tmp_path)) as box:
        assert box.add([_decision(1)]) == 0
        dropped = box.add([_decision(2), _block(1), _decision(3), _block(2)])
        assert dropped == 1  # room for three: both blocks, then one decision
        assert box.backlog() == 4
        kinds = [(kind, n) for _seq, kind, _line, n in box.pending()]
        assert kinds == [("decision", 1), ("block", 2), ("decision", 1)]


def test_a_spool_of_one_event_per_row_is_read_as_such(tmp_path: Path) -> None:
    with contextlib.closing(sqlite3.connect(tmp_path / spool.SPOOL)) as old:
        old.execute(
            "CREATE TABLE events ("
            " seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, line TEXT NOT NULL)"
        )
        old.execute("INSERT INTO events (kind, line) VALUES ('block', 'x\n'), ('block', 'y\n')")
        old.commit()
    with contextlib.closing(Spool.open(tmp_path)) as box:
        assert box.backlog() == 2
        assert [n for _seq, _kind, _line, n in box.pending()] == [1, 1]
