"""`postwarden gateway` and `postwarden spam-rule`."""

from __future__ import annotations

from tests.unit.conftest import Cli


def test_gateway_set_and_show(cli: Cli) -> None:
    cli.ok("init", "example.com")
    cli.ok(
        "gateway",
        "set",
        "--enable",
        "--ips",
        "192.0.2.10, 192.0.2.16/28",
        "--only-from-gateway",
        "on",
        "--skip-spam-filter",
        "on",
    )
    shown = cli.ok("gateway", "show", "--json").json()
    assert shown["enabled"] is True and shown["only_from_gateway"] is True
    assert shown["ips"] == ["192.0.2.10", "192.0.2.16/28"]
    cli.ok("gateway", "set", "--disable")
    assert cli.ok("gateway", "show", "--json").json()["enabled"] is False
    assert "ips:                  192.0.2.10, 192.0.2.16/28" in cli.ok("gateway", "show").out


def test_gateway_refuses_bad_input(cli: Cli) -> None:
    cli.ok("init", "example.com")
    before = cli.settings.read_bytes()
    for argv, message in [
        (["--ips", "10.0.0.0/16"], "wider than /20"),
        (["--ips", "bogus"], "'bogus' is not an IP address"),
        (["--ips", ",".join(f"192.0.2.{i}" for i in range(51))], "51 entries; at most 50"),
        (["--enable", "--only-from-gateway", "on"], "no gateway IPs are listed"),
        (["--internal-via-gateway", "on", "--enable", "--ips", "192.0.2.1"], "needs the route"),
        (["--route", "nowhere"], "route 'nowhere' does not exist"),
        ([], "nothing to change"),
    ]:
        result = cli("gateway", "set", *argv)
        assert result.status == 1, argv
        assert message in result.err, (argv, result.err)
        assert cli.settings.read_bytes() == before


def test_spam_rules(cli: Cli) -> None:
    cli.ok("init", "example.com")
    cli.ok("spam-rule", "add", "pills", "--field", "subject", "--pattern", r"(?i)cheap\s+pills")
    cli.ok("spam-rule", "add", "verdict", "--field", "header:X-Gateway-Spam", "--pattern", "yes")
    rules = cli.ok("spam-rule", "list", "--json").json()["rules"]
    assert [(r["name"], r["field"]) for r in rules] == [
        ("pills", "subject"),
        ("verdict", "header:X-Gateway-Spam"),
    ]
    before = cli.settings.read_bytes()
    for argv, message in [
        (["add", "x", "--field", "subject", "--pattern", r"(a)\1"], "backreferences"),
        (["add", "x", "--field", "subject", "--pattern", "a(?=b)"], "lookahead"),
        (["add", "x", "--field", "nose", "--pattern", "a"], "'nose' is not one of"),
        (["add", "pills", "--field", "body", "--pattern", "a"], "already has"),
        (["delete", "nothere"], "has no spam rule"),
    ]:
        result = cli("spam-rule", *argv)
        assert result.status == 1 and message in result.err, (argv, result.err)
        assert cli.settings.read_bytes() == before
    cli.ok("spam-rule", "delete", "pills")
    assert [r["name"] for r in cli.ok("spam-rule", "list", "--json").json()["rules"]] == ["verdict"]
