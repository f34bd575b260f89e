"""`postwarden tls`: TLS policies through the command line."""

from __future__ import annotations

from tests.unit.conftest import Cli


def test_add_list_edit_delete(cli: Cli) -> None:
    cli.ok("init", "example.com")
    cli.ok(
        "tls",
        "add",
        "--title",
        "partners",
        "--target",
        "outgoing",
        "--trusted-ca",
        "a.example, b.example",
        ".c.example",
    )
    cli.ok("tls", "add", "--title", "bank", "--target", "incoming", "bank.example")
    listing = cli.ok("tls", "list", "--json").json()["policies"]
    assert [(p["title"], p["level"], p["partners"]) for p in listing] == [
        ("partners", "verify", ["a.example", "b.example", ".c.example"]),
        ("bank", "TLS required from them", ["bank.example"]),
    ]
    cli.ok(
        "tls", "edit", "partners", "--no-trusted-ca", "--title", "enc", "--partners", "a.example"
    )
    edited = cli.ok("tls", "list", "--json").json()["policies"][0]
    assert (edited["title"], edited["level"], edited["partners"]) == (
        "enc",
        "encrypt",
        ["a.example"],
    )
    cli.ok("tls", "delete", "bank")
    assert [p["title"] for p in cli.ok("tls", "list", "--json").json()["policies"]] == ["enc"]


def test_bad_input_changes_nothing(cli: Cli) -> None:
    cli.ok("init", "example.com")
    cli.ok("tls", "add", "--title", "t", "--target", "outgoing", "a.example")
    before = cli.settings.read_bytes()
    cases = [
        (["tls", "add", "--title", "t", "--target", "outgoing", "b.example"], "already has"),
        (
            ["tls", "add", "--title", "u", "--target", "outgoing", "not_a_domain"],
            "'not_a_domain' is not a valid domain name",
        ),
        (
            ["tls", "add", "--title", "u", "--target", "incoming", "--trusted-ca", "b.example"],
            "apply to outgoing policies only",
        ),
        (["tls", "edit", "nope", "--trusted-ca"], "no TLS policy titled 'nope'"),
        (["tls", "delete", "nope"], "no TLS policy titled 'nope'"),
    ]
    for argv, message in cases:
        result = cli(*argv)
        assert result.status == 1, argv
        assert message in result.err, (argv, result.err)
        assert cli.settings.read_bytes() == before


def test_limits(cli: Cli) -> None:
    cli.ok("init", "example.com")
    too_many = " ".join(f"p{i}.example" for i in range(101))
    result = cli("tls", "add", "--title", "big", "--target", "outgoing", too_many)
    assert result.status == 1 and "101 partner domains; at most 100" in result.err
    for i in range(30):
        cli.ok("tls", "add", "--title", f"t{i}", "--target", "outgoing", f"p{i}.example")
    result = cli("tls", "add", "--title", "t30", "--target", "outgoing", "x.example")
    assert result.status == 1 and "31 TLS policies; at most 30" in result.err
