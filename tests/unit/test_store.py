"""The store's pure parts: URLs, redaction, the SQL dialect translation, node lag."""

from __future__ import annotations

from pathlib import Path

import pytest

from postwarden.store import BadStoreUrl, open_store, redact, store_url
from postwarden.store.file import FileStore
from postwarden.store.pg.adapter import translate
from postwarden.store.pg.connect import Target, describe
from postwarden.store.pg.store import node_lag


@pytest.mark.parametrize(
    ("given", "environ", "want"),
    [
        (None, {}, "file:"),
        (None, {"POSTWARDEN_STORE": "postgresql://h/db"}, "postgresql://h/db"),
        ("file:", {"POSTWARDEN_STORE": "postgresql://h/db"}, "file:"),
    ],
)
def test_store_url(given: str | None, environ: dict[str, str], want: str) -> None:
    assert store_url(given, environ) == want


def test_open_store_by_scheme(tmp_path: Path) -> None:
    assert isinstance(open_store("file:", settings_path=tmp_path, state_dir=tmp_path), FileStore)
    pg = open_store("postgres://u:pw@db.example/pw", settings_path=tmp_path, state_dir=tmp_path)
    assert pg.location == "postgres://u@db.example/pw"
    with pytest.raises(BadStoreUrl, match="'mysql://x'"):
        open_store("mysql://x", settings_path=tmp_path, state_dir=tmp_path)


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("postgresql://u:secret@h:5432/d", "postgresql://u:***@h:5432/d"),
        (
            "--store=postgres://u:secret@h/d?sslmode=require",
            "--store=postgres://u:***@h/d?sslmode=require",
        ),
        ("postgresql://u@h/d", "postgresql://u@h/d"),
        ("block", "block"),
    ],
)
def test_redact(text: str, want: str) -> None:
    assert redact(text) == want


def test_target_keeps_our_parameter_from_libpq_and_the_password_from_messages() -> None:
    target = Target.parse("postgresql://u:secret@[::1]:6432/d?sslmode=require&dkim_key_file=/k")
    assert target.dkim_key_file == "/k"
    assert "dkim_key_file" not in target.conninfo
    assert "connect_timeout=3" in target.conninfo and "sslmode=require" in target.conninfo
    assert target.shown == "postgresql://u@[::1]:6432/d"
    assert describe("postgresql://h/d") == "postgresql://h/d"
    assert target.poll_seconds == 30


@pytest.mark.parametrize("value", ["0", "0.5", "nan", "inf", "soon", "86401"])
def test_a_poll_interval_that_is_no_sensible_number_of_seconds_is_refused(value: str) -> None:
    with pytest.raises(BadStoreUrl, match=f"poll_seconds='{value}' is not a number of seconds"):
        Target.parse(f"postgresql://u:secret@h/d?poll_seconds={value}")


def test_the_poll_interval_is_ours_not_libpq_s() -> None:
    target = Target.parse("postgresql://h/d?poll_seconds=2.5")
    assert target.poll_seconds == 2.5 and "poll_seconds" not in target.conninfo


@pytest.mark.parametrize(
    ("sqlite", "postgresql"),
    [
        ("BEGIN IMMEDIATE", "BEGIN"),
        ("SELECT 1 FROM t WHERE a = ? AND b = ?", "SELECT 1 FROM t WHERE a = %s AND b = %s"),
        (
            "SELECT '?' FROM t WHERE a LIKE '%x' AND b = ?",
            "SELECT '?' FROM t WHERE a LIKE '%%x' AND b = %s",
        ),
    ],
)
def test_translate(sqlite: str, postgresql: str) -> None:
    assert translate(sqlite) == postgresql


def test_node_lag() -> None:
    versions = [(1, "d1", 100.0), (2, "d2", 200.0), (3, "d3", 300.0)]
    rows = [
        ("a", "mx1", 1000.0, "d3"),
        ("a", "mx1", 1000.0, "d3"),
        ("b", "mx2", 1000.0, "d3"),
        ("b", "mx2", 1000.0, "d1"),  # one of its daemons still answers with version 1
        ("c", "mx3", 1000.0, None),  # no daemon reported yet
    ]
    nodes = {n["name"]: n for n in node_lag(versions, rows, here="b")}
    assert (nodes["mx1"]["applied_version"], nodes["mx1"]["behind"]) == (3, 0)
    assert (nodes["mx2"]["applied_version"], nodes["mx2"]["behind"]) == (1, 2)
    assert nodes["mx2"]["this_node"] and not nodes["mx1"]["this_node"]
    assert int(str(nodes["mx2"]["lag_seconds"])) > 0
    assert nodes["mx3"]["applied_version"] is None and nodes["mx3"]["behind"] == 3
