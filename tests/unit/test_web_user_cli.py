"""`postwarden web-user`: users of the web console from the command line."""

from __future__ import annotations

from pathlib import Path

from tests.unit.conftest import Cli


def test_add_list_passwd_delete(cli: Cli, tmp_path: Path) -> None:
    cli.ok("init", "example.com")
    cli.ok("domain", "add", "sales.example.com")
    secret = tmp_path / "pw"
    secret.write_text("a long password\nignored second line\n")
    added = cli.ok("web-user", "add", "alice", "--role", "admin", "--password-file", str(secret))
    assert added.out.strip() == "web user 'alice' added (admin)"
    cli.ok(
        "web-user",
        "add",
        "sam",
        "--role",
        "domain-admin",
        "--domain",
        "sales.example.com",
        "--password-file",
        "-",
        stdin="another password\n",
    )
    listing = cli.ok("web-user", "list", "--json").json()
    assert [(u["name"], u["role"], u["domain"]) for u in listing] == [
        ("alice", "admin", None),
        ("sam", "domain-admin", "sales.example.com"),
    ]
    short = cli("web-user", "passwd", "sam", "--password-file", "-", stdin="short\n")
    assert short.status == 1 and "shorter than 10 characters" in short.err
    cli.ok("web-user", "passwd", "sam", "--password-file", "-", stdin="a new password\n")
    cli.ok("web-user", "delete", "sam")
    assert [u["name"] for u in cli.ok("web-user", "list", "--json").json()] == ["alice"]
    gone = cli("web-user", "delete", "sam")
    assert gone.status == 1 and "no web user named 'sam'" in gone.err
    rows = cli.ok("history", "--json").json()
    events = [r["diff"].strip() for r in rows if r["diff"].startswith("web user")]
    assert events == [
        "web user 'sam' deleted",
        "web user 'sam': password changed",
        "web user 'sam' added (domain-admin of sales.example.com)",
        "web user 'alice' added (admin)",
    ]
    assert not any("a long password" in r["diff"] + r["command"] for r in rows)
