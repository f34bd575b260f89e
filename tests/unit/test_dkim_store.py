"""DKIM key status: pending, active (one per domain), retired; rotation; the milter's view."""

from __future__ import annotations

from pathlib import Path

import pytest

from postwarden.dkim.keys import Algorithm
from postwarden.dkim.store import (
    ActiveKeyInUse,
    ChangeProbe,
    DkimKeys,
    SelectorExists,
    SigningKey,
    Status,
    UnknownSelector,
    signing_keys,
)
from postwarden.state.db import StateDB

RSA, ED = Algorithm.RSA, Algorithm.ED25519


@pytest.fixture
def db(tmp_path: Path) -> StateDB:
    with StateDB.open(tmp_path) as opened:
        yield opened  # type: ignore[misc]


def _statuses(table: DkimKeys, domain: str) -> dict[str, str]:
    return {k.selector: k.status.value for k in table.for_domain(domain)}


def test_new_keys_are_pending(db: StateDB) -> None:
    table = DkimKeys(db)
    row = table.add("example.com", "s1", RSA, 2048, now=100.0)
    assert (row.status, row.created, row.verified) == (Status.PENDING, 100.0, None)
    assert table.get("example.com", "s1") == row
    assert table.get("example.com", "nope") is None
    assert table.active("example.com") is None
    assert table.newest_pending("example.com") == row
    with pytest.raises(SelectorExists, match="selector 's1' already"):
        table.add("example.com", "s1", ED, 256)
    table.add("other.example", "s1", ED, 256)  # selectors are per domain


def test_rotation(db: StateDB) -> None:
    table = DkimKeys(db)
    table.add("example.com", "s1", RSA, 2048, now=1.0)
    assert table.activate("example.com", "s1", "ok: found", now=2.0) is None
    active = table.active("example.com")
    assert active is not None
    assert (active.selector, active.verified, active.last_check) == ("s1", 2.0, 2.0)

    # A new key changes nothing for signing...
    table.add("example.com", "s2", ED, 256, now=3.0)
    assert _statuses(table, "example.com") == {"s1": "active", "s2": "pending"}
    # ...nor does a failed check of it...
    failed = table.record_check("example.com", "s2", "missing: NXDOMAIN", now=4.0)
    assert (failed.status, failed.last_result, failed.last_check) == (
        Status.PENDING,
        "missing: NXDOMAIN",
        4.0,
    )
    assert table.active("example.com").selector == "s1"  # type: ignore[union-attr]
    # ...until it verifies: then it is active and the old one retired, both at once.
    retired = table.activate("example.com", "s2", "ok: found", now=5.0)
    assert retired is not None and (retired.selector, retired.status) == ("s1", Status.RETIRED)
    assert _statuses(table, "example.com") == {"s1": "retired", "s2": "active"}
    # Verifying a retired key again brings it back (a roll-back).
    table.activate("example.com", "s1", "ok: found", now=6.0)
    assert _statuses(table, "example.com") == {"s1": "active", "s2": "retired"}


def test_failed_check_of_the_active_key_keeps_it_signing(db: StateDB) -> None:
    table = DkimKeys(db)
    table.add("example.com", "s1", RSA, 2048)
    table.activate("example.com", "s1", "ok")
    table.record_check("example.com", "s1", "dns-error: timed out")
    key = table.active("example.com")
    assert key is not None and key.last_result == "dns-error: timed out"


def test_newest_first(db: StateDB) -> None:
    table = DkimKeys(db)
    table.add("example.com", "old", RSA, 1024, now=1.0)
    table.add("example.com", "new", RSA, 2048, now=2.0)
    assert [k.selector for k in table.for_domain("example.com")] == ["new", "old"]
    assert table.newest_pending("example.com").selector == "new"  # type: ignore[union-attr]


def test_unknown_selectors(db: StateDB) -> None:
    table = DkimKeys(db)
    for call in (
        lambda: table.require("example.com", "x"),
        lambda: table.record_check("example.com", "x", "missing"),
        lambda: table.activate("example.com", "x", "ok"),
        lambda: table.delete("example.com", "x"),
    ):
        with pytest.raises(UnknownSelector, match="no DKIM key with selector 'x'"):
            call()
    assert table.for_domain("example.com") == []


def test_delete(db: StateDB) -> None:
    table = DkimKeys(db)
    table.add("example.com", "s1", RSA, 2048)
    table.activate("example.com", "s1", "ok")
    table.add("example.com", "s2", RSA, 2048)
    with pytest.raises(ActiveKeyInUse, match="'s1' is the active key"):
        table.delete("example.com", "s1")
    assert table.delete("example.com", "s2").selector == "s2"
    assert _statuses(table, "example.com") == {"s1": "active"}


def test_signing_keys(db: StateDB, tmp_path: Path) -> None:
    table = DkimKeys(db)
    table.add("b.example", "s", ED, 256)
    table.add("a.example", "s", RSA, 2048)
    table.add("a.example", "pending", RSA, 2048)
    table.add("c.example", "never", RSA, 2048)
    table.activate("b.example", "s", "ok")
    table.activate("a.example", "s", "ok")
    assert signing_keys(db, tmp_path) == [
        SigningKey("a.example", "s", RSA, tmp_path / "dkim" / "a.example" / "s.pem"),
        SigningKey("b.example", "s", ED, tmp_path / "dkim" / "b.example" / "s.pem"),
    ]


def test_change_probe(tmp_path: Path) -> None:
    with StateDB.open(tmp_path) as daemon, StateDB.open(tmp_path) as cli:
        probe = ChangeProbe(daemon, tmp_path)
        assert probe.current() == []
        assert not probe.changed()
        table = DkimKeys(cli)
        table.add("example.com", "s1", RSA, 2048)
        assert not probe.changed()  # a pending key does not change signing
        table.activate("example.com", "s1", "ok")
        assert probe.changed()
        assert probe.changed()  # stays True until current() is read
        assert [k.selector for k in probe.current()] == ["s1"]
        assert not probe.changed()
        table.record_check("example.com", "s1", "dns-error")  # a commit, same keys
        assert not probe.changed()
        table.add("example.com", "s2", ED, 256)
        table.activate("example.com", "s2", "ok")
        assert probe.changed()
        assert [(k.selector, k.algorithm) for k in probe.current()] == [("s2", ED)]
