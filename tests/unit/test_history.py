"""The audit trail: every command change recorded with user, command and diff."""

from __future__ import annotations

import os

from tests.unit.conftest import Cli


def test_commands_are_recorded_newest_first(cli: Cli, monkeypatch: object) -> None:
    cli.ok("init", "example.com")
    cli.ok("block", "add", "192.0.2.1", "--note", "spam run")
    os.environ["SUDO_USER"] = "alice"
    try:
        cli.ok("allow", "add", "198.51.100.0/24")
    finally:
        del os.environ["SUDO_USER"]
    cli.ok("allow", "add", "198.51.100.0/24")  # no change: nothing recorded
    rows = cli.ok("history", "--json").json()
    assert [(r["user"], r["source"], r["command"]) for r in rows] == [
        ("alice", "command", "postwarden allow add 198.51.100.0/24"),
        (rows[1]["user"], "command", "postwarden block add 192.0.2.1 --note 'spam run'"),
        (rows[1]["user"], "command", "postwarden init example.com"),
    ]
    assert "+    - 198.51.100.0/24" in rows[0]["diff"]
    assert rows[1]["after"] == rows[0]["before"]
    text = cli.ok("history", "--diff", "--limit", "1").out
    assert "alice" in text and "+    - 198.51.100.0/24" in text and "192.0.2.1" not in text


def test_no_history_yet(cli: Cli) -> None:
    cli.settings.write_text("version: 1\nprimary_domain: example.com\n")
    assert cli.ok("history").out.strip() == "no settings changes recorded"
