"""The shared service layer as the command line shows it (issue 10's "Why" bullets 4 and 5).

Each test here failed on the command line before it moved onto postwarden/admin: guarded
domain deletion, --dry-run, warnings said once, every edit naming its domain and a copied
parent block, trusted-network blocks, regex errors in words, and a complete history.
"""

from __future__ import annotations

import os
import time

from postwarden.state.db import StateDB
from tests.unit.conftest import Cli


def _example(cli: Cli) -> None:
    cli.ok("init", "example.com")
    cli.ok("domain", "add", "sales.example.com")
    cli.ok("domain", "add", "eu.sales.example.com")


def test_domain_delete_refuses_what_would_be_lost_and_names_it(cli: Cli) -> None:
    _example(cli)
    cli.ok("block", "add", "--domain", "sales.example.com", "203.0.113.0/24", "--note", "spam")
    cli.ok("dkim", "create", "--domain", "sales.example.com", "--algorithm", "ed25519")
    before = cli.settings.read_bytes()
    refused = cli("domain", "delete", "sales.example.com")
    assert refused.status == 1
    assert "its own settings: 1 blocked IPs" in refused.err
    assert "its DKIM keys: postwarden (pending)" in refused.err
    assert (
        "eu.sales.example.com uses sales.example.com's settings and would use example.com's"
        in refused.err
    )
    assert "--force" in refused.err
    assert cli.settings.read_bytes() == before
    forced = cli.ok("domain", "delete", "--force", "sales.example.com")
    assert "sales.example.com: deleted; lost:" in forced.out
    hosted = [d["domain"] for d in cli.ok("domain", "list", "--json").json()]
    assert hosted == ["example.com", "eu.sales.example.com"]


def test_domain_delete_of_a_domain_with_nothing_of_its_own_needs_no_force(cli: Cli) -> None:
    _example(cli)
    cli.ok("domain", "delete", "eu.sales.example.com")


def test_dry_run_prints_the_change_and_the_decisions_it_would_alter(cli: Cli) -> None:
    _example(cli)
    before = cli.settings.read_bytes()
    result = cli.ok("block", "add", "--dry-run", "192.0.2.7", "--note", "spam run")
    assert result.out.startswith("dry run, nothing was written: example.com blocked_ips: 1 added")
    assert "+      note: spam run" in result.out
    assert (
        "client 192.0.2.7, from <someone@elsewhere.invalid> to <postmaster@example.com>:"
        " accept (no-rule) -> reject (blocked-ip)" in result.out
    )
    # the subdomains that use example.com's block change too
    assert "to <postmaster@eu.sales.example.com>: accept (no-rule) -> reject" in result.out
    assert cli.settings.read_bytes() == before
    assert (
        cli.ok("history", "--json").json()[0]["command"]
        == "postwarden domain add eu.sales.example.com"
    )


def test_dry_run_on_every_editing_command_writes_nothing(cli: Cli) -> None:
    _example(cli)
    cli.ok("route", "add", "archive", "--host", "[192.0.2.25]")
    before = cli.settings.read_bytes()
    for argv in (
        ["allow", "add", "198.51.100.1"],
        ["domain", "add", "new.example"],
        ["domain", "delete", "sales.example.com"],
        ["gateway", "set", "--enable", "--ips", "192.0.2.10"],
        ["spam-rule", "add", "x", "--field", "subject", "--pattern", "pills"],
        ["tls", "add", "--title", "bank", "--target", "incoming", "bank.example"],
        ["route", "add", "dlp", "--host", "[192.0.2.26]"],
        ["route", "delete", "archive"],
        ["routing", "inbound", "add", "r", "--route", "archive", "--condition", "all"],
    ):
        result = cli.ok(*argv, "--dry-run", "--json")
        assert result.json()["dry_run"]["diff"], argv
        assert cli.settings.read_bytes() == before, argv
    tls = cli.ok(
        "tls", "add", "--dry-run", "--title", "bank", "--target", "incoming", "bank.example"
    )
    assert "client 192.0.2.254, from <someone@bank.example>" in tls.out
    assert "accept (no-rule) -> reject (tls-required)" in tls.out


def test_warnings_are_said_by_the_edit_that_caused_them_and_by_check_only(cli: Cli) -> None:
    _example(cli)
    cli.ok("block", "add", "192.0.2.0/24")
    edit = cli.ok("block", "add", "192.0.2.7")
    assert "192.0.2.7 is inside 192.0.2.0/24" in edit.err
    for argv in (
        ["block", "list"],
        ["domain", "list"],
        ["status"],
        ["history"],
        [
            "explain",
            "--client-ip",
            "192.0.2.7",
            "--sender",
            "a@x.example",
            "--recipient",
            "bob@example.com",
        ],
        ["allow", "add", "198.51.100.1"],  # an unrelated edit does not repeat it
    ):
        result = cli(*argv)
        assert "inside" not in result.err, (argv, result.err)
    assert "192.0.2.7 is inside 192.0.2.0/24" in cli.ok("check").out


def test_every_edit_names_its_domain_and_a_copied_parent_block(cli: Cli) -> None:
    _example(cli)
    cli.ok("route", "add", "archive", "--host", "[192.0.2.25]")
    sub = ["--domain", "sales.example.com"]
    cases = [
        ["routing", "inbound", "add", "r", "--route", "archive", "--condition", "all", *sub],
        ["spam-rule", "add", "x", "--field", "subject", "--pattern", "pills", *sub],
        ["tls", "add", "--title", "t", "--target", "outgoing", "a.example", *sub],
        ["gateway", "set", "--ips", "192.0.2.10", *sub],
    ]
    first = cli.ok(*cases[0])
    assert "sales.example.com: inbound rule 'r' added" in first.out
    assert "sales.example.com now has its own settings, copied from example.com" in first.err
    for argv in cases[1:]:
        result = cli.ok(*argv)
        assert "sales.example.com" in result.out, argv
    cli.ok("domain", "add", "other.sales.example.com")
    spam = cli.ok(
        "spam-rule",
        "add",
        "y",
        "--field",
        "subject",
        "--pattern",
        "a",
        "--domain",
        "other.sales.example.com",
    )
    assert "other.sales.example.com: spam rule 'y' added" in spam.out
    assert (
        "other.sales.example.com now has its own settings, copied from sales.example.com"
        in spam.err
    )


def test_blocking_a_trusted_address_warns_that_it_can_never_apply(cli: Cli) -> None:
    cli.ok("init", "example.com")
    result = cli.ok("block", "add", "127.0.0.2")
    assert (
        "127.0.0.2 is inside trusted_networks (127.0.0.0/8): trusted clients are never judged"
        " by the IP lists, so this block can never apply" in result.err
    )
    assert "trusted" not in cli.ok("block", "add", "192.0.2.1").err


def test_a_bad_regex_is_named_in_words(cli: Cli) -> None:
    cli.ok("init", "example.com")
    before = cli.settings.read_bytes()
    for pattern, words in (
        ("(abc", "missing )"),
        ("a(?<=b)", "lookahead and lookbehind are not supported"),
        (r"(a)\1", "backreferences are not supported"),
    ):
        result = cli("spam-rule", "add", "x", "--field", "subject", "--pattern", pattern)
        assert result.status == 1
        assert f"pattern {pattern!r} is not a valid RE2 pattern: {words}" in result.err
        assert "invalid settings" not in result.err
    assert cli.settings.read_bytes() == before


def test_an_ed25519_key_is_called_an_ed25519_key(cli: Cli) -> None:
    cli.ok("init", "example.com")
    result = cli.ok("dkim", "create", "--algorithm", "ed25519")
    assert "Created an Ed25519 key for example.com" in result.out


def test_history_records_init_dkim_and_hand_edits_with_their_time(cli: Cli) -> None:
    cli.ok("init", "example.com")
    cli.ok("dkim", "create", "--selector", "s1", "--algorithm", "ed25519")
    cli.ok("dkim", "delete", "--selector", "s1")
    text = cli.settings.read_text().replace("domains:", "domains:\n  hand.example:", 1)
    cli.settings.write_text(text)
    edited = time.time() - 3600
    os.utime(cli.settings, (edited, edited))
    cli.ok("block", "add", "192.0.2.1")
    rows = cli.ok("history", "--json").json()
    assert [(r["source"], r["command"]) for r in rows][::-1] == [
        ("command", "postwarden init example.com"),
        ("command", "postwarden dkim create --selector s1 --algorithm ed25519"),
        ("command", "postwarden dkim delete --selector s1"),
        ("file", "edited file"),
        ("command", "postwarden block add 192.0.2.1"),
    ]
    assert "dkim: created an Ed25519 key 's1' for example.com (pending)" in rows[3]["diff"]
    assert "dkim: deleted pending key 's1' of example.com" in rows[2]["diff"]
    with StateDB.open(cli.state_dir) as db:
        hand = db.conn.execute("SELECT time FROM audit WHERE source = 'file'").fetchone()[0]
    assert abs(hand - edited) < 1
    text = cli.ok("history").out
    assert "the file was edited" in text and "dkim: deleted pending key 's1'" in text
