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


SPAM_MESSAGE = (
    "From: Seller <seller@spam.example>\n"
    "To: bob@example.com\n"
    "Subject: =?utf-8?q?Cheap_=20pills?= today\n"
    "X-Gateway-Spam: yes\n"
    "Content-Type: text/plain; charset=utf-8\n"
    "\n"
    "Hello, visit http://pills.example for more.\n"
)


def test_spam_rule_switches_per_rule_and_per_domain(cli: Cli) -> None:
    cli.ok("init", "example.com")
    cli.ok("spam-rule", "add", "pills", "--field", "subject", "--pattern", r"(?i)cheap\s+pills")
    cli.ok("spam-rule", "add", "verdict", "--field", "header:X-Gateway-Spam", "--pattern", "yes")
    cli.ok("spam-rule", "disable", "pills")
    listed = cli.ok("spam-rule", "list", "--json").json()
    assert listed["enabled"] is True
    assert [(r["name"], r["enabled"]) for r in listed["rules"]] == [
        ("pills", False),
        ("verdict", True),
    ]
    assert "enabled: false" in cli.settings.read_text()
    cli.ok("spam-rule", "disable")
    assert cli.ok("spam-rule", "list", "--json").json()["enabled"] is False
    assert "spam filter OFF" in cli.ok("spam-rule", "list").out
    again = cli.ok("spam-rule", "disable", "--json").json()
    assert again["changed"] is False
    cli.ok("spam-rule", "enable")
    cli.ok("spam-rule", "enable", "pills")
    assert "enabled" not in cli.settings.read_text()  # defaults are not written
    before = cli.settings.read_bytes()
    result = cli("spam-rule", "enable", "nosuch")
    assert result.status == 1 and "no spam rule named 'nosuch'" in result.err
    assert cli.settings.read_bytes() == before


def test_spam_rule_test_shows_which_rule_matches_which_part(cli: Cli, tmp_path) -> None:
    cli.ok("init", "example.com")
    cli.ok("spam-rule", "add", "pills", "--field", "subject", "--pattern", r"(?i)cheap\s+pills")
    cli.ok("spam-rule", "add", "verdict", "--field", "header:X-Gateway-Spam", "--pattern", "yes")
    cli.ok("spam-rule", "add", "link", "--field", "body", "--pattern", r"pills\.example")
    cli.ok("spam-rule", "add", "never", "--field", "from", "--pattern", "nobody@")
    cli.ok("spam-rule", "disable", "verdict")
    path = tmp_path / "message.eml"
    path.write_text(SPAM_MESSAGE)
    result = cli.ok("spam-rule", "test", str(path), "--json").json()
    found = {(m["rule"], m["field"], m["in_use"]) for m in result["matches"]}
    assert found == {
        ("pills", "subject", True),  # matched in the RFC 2047-decoded subject
        ("verdict", "header:X-Gateway-Spam", False),
        ("link", "body", True),
    }
    pills = next(m for m in result["matches"] if m["rule"] == "pills")
    assert "Cheap pills today" in pills["excerpt"]
    assert result["x_postwarden_spam"] == "link, pills"
    text = cli.ok("spam-rule", "test", str(path)).out
    assert "verdict (off): header:X-Gateway-Spam matches" in text
    assert "tagged: X-Spam-Flag: YES, X-Postwarden-Spam: link, pills" in text
    path.write_text("this is not a message\n\nbody\n")
    bad = cli("spam-rule", "test", str(path))
    assert bad.status == 1 and "line 1 is not a header field" in bad.err
