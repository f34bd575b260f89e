"""The core command line: init, domain, allow, block — as scripts and config tools use it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from postwarden.state.db import BlockEvent, StateDB
from tests.unit.conftest import Cli


def test_init_creates_a_valid_file_and_never_overwrites(cli: Cli) -> None:
    result = cli.ok("init", "--json", "Example.COM")
    assert result.json() == {
        "settings": str(cli.settings),
        "primary_domain": "example.com",
        "created": True,
    }
    before = cli.settings.read_bytes()
    again = cli("init", "other.example")
    assert again.status == 1
    assert "exists already; it is never overwritten" in again.err
    assert cli.settings.read_bytes() == before
    assert cli("check").status == 0


def test_init_refuses_a_bad_domain(cli: Cli) -> None:
    result = cli("init", "not a domain")
    assert result.status == 1
    assert "'not a domain' is not a valid domain name" in result.err
    assert not cli.settings.exists()


def test_domains_add_list_delete(cli: Cli) -> None:
    cli.ok("init", "example.com")
    cli.ok("domain", "add", "Sales.Example.com.")
    cli.ok("domain", "add", "other.example")
    assert cli.ok("domain", "add", "other.example").out.strip() == "other.example: already hosted"
    listing = cli.ok("domain", "list", "--json").json()
    assert listing == [
        {
            "domain": "example.com",
            "primary": True,
            "settings_from": "example.com",
            "own_settings": True,
        },
        {
            "domain": "sales.example.com",
            "primary": False,
            "settings_from": "example.com",
            "own_settings": False,
        },
        {"domain": "other.example", "primary": False, "settings_from": "", "own_settings": False},
    ]
    refused = cli("domain", "delete", "example.com")
    assert refused.status == 1 and "primary domain" in refused.err
    assert cli("domain", "delete", "nothere.example").status == 1
    cli.ok("domain", "delete", "other.example")
    assert [d["domain"] for d in cli.ok("--json", "domain", "list").json()] == [
        "example.com",
        "sales.example.com",
    ]


def test_batch_with_one_bad_entry_changes_nothing_and_names_it(cli: Cli) -> None:
    cli.ok("init", "example.com")
    before = cli.settings.read_bytes()
    result = cli("block", "add", "192.0.2.1, 198.51.100.0/24", "10.0.0.1/8", "bogus")
    assert result.status == 1
    assert "'10.0.0.1/8' has host bits set" in result.err
    assert "'bogus' is not an IP address" in result.err
    assert "nothing was changed" in result.err
    assert cli.settings.read_bytes() == before


def test_entries_separated_by_commas_spaces_and_lines_and_from_stdin(cli: Cli) -> None:
    cli.ok("init", "example.com")
    cli.ok("allow", "add", "192.0.2.1,192.0.2.2 192.0.2.3\n2001:db8::/64", "--note", "relays")
    cli.ok("allow", "add", "-", stdin="198.51.100.1\n198.51.100.2-198.51.100.9\n")
    listing = cli.ok("allow", "list", "--json").json()
    assert [e["entry"] for e in listing["entries"]] == [
        "192.0.2.1",
        "192.0.2.2",
        "192.0.2.3",
        "2001:db8::/64",
        "198.51.100.1",
        "198.51.100.2-198.51.100.9",
    ]
    assert {e["note"] for e in listing["entries"][:4]} == {"relays"}


def test_adding_again_is_idempotent_and_note_updates(cli: Cli) -> None:
    cli.ok("init", "example.com")
    cli.ok("block", "add", "192.0.2.0/24")
    before = cli.settings.read_bytes()
    again = cli.ok("block", "add", "--json", "192.0.2.0/24").json()
    assert again["changed"] is False and again["unchanged"] == ["192.0.2.0/24"]
    assert cli.settings.read_bytes() == before
    updated = cli.ok("block", "add", "--json", "192.0.2.0/24", "--note", "spam run").json()
    assert updated["updated"] == ["192.0.2.0/24"]
    assert cli.ok("block", "list", "--json").json()["entries"][0]["note"] == "spam run"


def test_delete_matches_by_range_and_refuses_unknown_entries(cli: Cli) -> None:
    cli.ok("init", "example.com")
    cli.ok("block", "add", "192.0.2.7", "203.0.113.0/24")
    before = cli.settings.read_bytes()
    refused = cli("block", "delete", "192.0.2.7", "198.51.100.1")
    assert refused.status == 1 and "not in blocked_ips of example.com: 198.51.100.1" in refused.err
    assert cli.settings.read_bytes() == before
    # the same range written another way is the same entry
    cli.ok("block", "delete", "192.0.2.7/32", "203.0.113.0-203.0.113.255")
    assert cli.ok("block", "list", "--json").json()["entries"] == []


def test_10001_entries_are_refused_whole(cli: Cli) -> None:
    cli.ok("init", "example.com")
    first = "\n".join(f"10.0.{i >> 8}.{i & 255}" for i in range(9_999))
    cli.ok("allow", "add", "-", stdin=first)
    before = cli.settings.read_bytes()
    result = cli("allow", "add", "10.1.0.1", "10.1.0.2")
    assert result.status == 1
    assert "allowed_ips: 10,001 entries; at most 10,000 are allowed" in result.err
    assert cli.settings.read_bytes() == before
    cli.ok("allow", "add", "10.1.0.1")  # the 10,000th still fits


def test_a_subdomain_gets_its_own_copy_before_it_changes(cli: Cli) -> None:
    cli.ok("init", "example.com")
    cli.ok("block", "add", "203.0.113.0/24")
    cli.ok("domain", "add", "sales.example.com")
    result = cli.ok("block", "add", "--domain", "sales.example.com", "192.0.2.66")
    assert "sales.example.com now has its own settings, copied from example.com" in result.err
    sub = cli.ok("block", "list", "--json", "--domain", "sales.example.com").json()
    assert [e["entry"] for e in sub["entries"]] == ["203.0.113.0/24", "192.0.2.66"]
    parent = cli.ok("block", "list", "--json").json()
    assert [e["entry"] for e in parent["entries"]] == ["203.0.113.0/24"]


def test_domain_option_must_name_a_hosted_domain(cli: Cli) -> None:
    cli.ok("init", "example.com")
    result = cli("block", "add", "--domain", "elsewhere.example", "192.0.2.1")
    assert result.status == 1 and "elsewhere.example is not a hosted domain" in result.err


def test_block_list_sorts_by_most_recent_block(cli: Cli) -> None:
    cli.ok("init", "example.com")
    cli.ok("block", "add", "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")
    now = time.time()
    with StateDB.open(cli.state_dir) as db:
        db.record_blocks(
            [
                BlockEvent("example.com", "192.0.2.0/24", "192.0.2.9", now - 3600),
                BlockEvent("example.com", "203.0.113.0/24", "203.0.113.5", now - 60),
                BlockEvent("example.com", "203.0.113.0/24", "203.0.113.6", now - 30),
            ]
        )
    plain = cli.ok("block", "list", "--json").json()["entries"]
    assert [e["entry"] for e in plain] == ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"]
    recent = cli.ok("block", "list", "--sort", "recent", "--json").json()["entries"]
    assert [(e["entry"], e["blocks"], e["clients"]) for e in recent] == [
        ("203.0.113.0/24", 2, 2),
        ("192.0.2.0/24", 1, 1),
        ("198.51.100.0/24", 0, 0),
    ]
    text = cli.ok("block", "list", "--sort", "recent").out.splitlines()
    assert text[0].split() == ["ENTRY", "NOTE", "LAST", "BLOCKED", "BLOCKS"]
    assert text[1].startswith("203.0.113.0/24")


def test_errors_are_json_under_json(cli: Cli) -> None:
    result = cli("--json", "block", "add", "192.0.2.1")
    assert result.status == 1
    assert "no such file" in result.json()["error"]


def test_help_on_every_command(cli: Cli) -> None:
    for argv in (
        ["--help"],
        ["init", "--help"],
        ["check", "--help"],
        ["domain", "add", "--help"],
        ["allow", "add", "--help"],
        ["block", "list", "--help"],
        ["explain", "--help"],
    ):
        result = subprocess.run(
            [sys.executable, "-m", "postwarden.cli", *argv],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, (argv, result.stderr)
        assert "usage: postwarden" in result.stdout


def test_eight_concurrent_commands_lose_no_update(tmp_path: Path) -> None:
    """Eight `postwarden block add` processes at once: every entry survives."""
    env = {
        **os.environ,
        "POSTWARDEN_SETTINGS": str(tmp_path / "s.yaml"),
        "POSTWARDEN_STATE_DIR": str(tmp_path / "state"),
    }

    def postwarden(*argv: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "postwarden.cli", *argv],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    init = postwarden("init", "example.com")
    init.communicate(timeout=60)
    assert init.returncode == 0
    processes = [postwarden("block", "add", f"192.0.2.{i}", f"2001:db8::{i}") for i in range(1, 9)]
    for process in processes:
        _, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
    listing, _ = postwarden("block", "list", "--json").communicate(timeout=60)
    entries = {e["entry"] for e in json.loads(listing)["entries"]}
    assert entries == {f"192.0.2.{i}" for i in range(1, 9)} | {
        f"2001:db8::{i}" for i in range(1, 9)
    }
    backup = tmp_path / "s.yaml.bak"
    assert backup.exists()  # the previous version is kept
