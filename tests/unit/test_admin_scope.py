"""The service layer's reach rules: what a domain administrator may see and change."""

from __future__ import annotations

import pytest

from postwarden.admin import domains, history, iplists, routes, status, web_users
from postwarden.admin.errors import BadInput, Forbidden, NotFound
from postwarden.admin.session import Actor, Admin
from postwarden.store.file import FileStore
from tests.unit.conftest import Cli


def _setup(cli: Cli) -> None:
    cli.ok("init", "example.com")
    for domain in ("sales.example.com", "eu.sales.example.com", "customer.example"):
        cli.ok("domain", "add", domain)
    cli.ok("block", "add", "--domain", "customer.example", "198.51.100.0/24")
    cli.ok("route", "add", "archive", "--host", "[192.0.2.25]")


def _admin(cli: Cli, domain: str | None, name: str = "sam") -> Admin:
    return Admin(FileStore(cli.settings, cli.state_dir), Actor(name, "web", "test", domain))


def test_a_domain_administrator_sees_and_changes_only_its_domains(cli: Cli) -> None:
    _setup(cli)
    sam = _admin(cli, "sales.example.com")
    assert [r.domain for r in domains.listing(sam)] == ["sales.example.com", "eu.sales.example.com"]
    before = cli.settings.read_bytes()
    for domain in ("customer.example", "example.com", "elsewhere.example"):
        with pytest.raises(NotFound, match=f"{domain} is not a hosted domain"):
            iplists.add(sam, domain, "blocked_ips", ["192.0.2.1"], None)
        with pytest.raises(NotFound):
            iplists.listing(sam, domain, "blocked_ips")
    with pytest.raises(Forbidden, match="server administrator"):
        routes.put(sam, "evil", create=True, host="[192.0.2.66]")
    with pytest.raises(Forbidden):
        routes.delete(sam, "archive")
    with pytest.raises(Forbidden):
        domains.add(sam, "new.sales.example.com")
    with pytest.raises(Forbidden):
        web_users.add(sam, "eve", "admin", None, "a long password")
    assert cli.settings.read_bytes() == before
    done = iplists.add(sam, None, "blocked_ips", ["192.0.2.1"], "mine")  # default: its own
    assert done.change.domain == "sales.example.com"
    assert done.change.copied_from == "example.com"


def test_a_domain_administrator_reads_only_its_own_history_and_status(cli: Cli) -> None:
    _setup(cli)
    sam = _admin(cli, "sales.example.com")
    iplists.add(sam, "eu.sales.example.com", "blocked_ips", ["192.0.2.2"], None)
    mine = history.entries(sam, 50)
    assert [e.user for e in mine] == ["sam"]
    assert len(history.entries(_admin(cli, None, "alice"), 50)) > 1
    data, _ = status.gather(sam, timeout=0.5)
    assert [d["domain"] for d in data["dkim"]] == ["sales.example.com", "eu.sales.example.com"]
    assert routes.listing(sam)[0].used_by == []  # other domains' rules are not named


def test_web_users_roles_and_passwords(cli: Cli) -> None:
    _setup(cli)
    root = _admin(cli, None, "root")
    for args, message in [
        (("bad name", "admin", None, "a long password"), "is not a user name"),
        (("eve", "owner", None, "a long password"), "'owner' is not one of"),
        (("eve", "domain-admin", None, "a long password"), "needs --domain"),
        (("eve", "domain-admin", "nowhere.example", "a long password"), "not a hosted domain"),
        (("eve", "admin", "example.com", "a long password"), "for domain administrators"),
        (("eve", "admin", None, "short"), "shorter than 10"),
    ]:
        with pytest.raises(BadInput, match=message):
            web_users.add(root, *args)
    user = web_users.add(root, "eve", "domain-admin", "Sales.Example.com", "a long password")
    assert (user.role, user.domain) == ("domain-admin", "sales.example.com")
    assert user.actor().reaches("eu.sales.example.com") and not user.actor().reaches("example.com")
    with pytest.raises(BadInput, match="exists already"):
        web_users.add(root, "eve", "admin", None, "a long password")
    session = web_users.login(root, "eve", "a long password", "192.0.2.1")
    assert web_users.session(root, session.token) is not None
    web_users.set_password(root, "eve", "another long one")
    assert web_users.session(root, session.token) is None  # a new password ends sessions
    with pytest.raises(web_users.LoginRefused):
        web_users.login(root, "eve", "a long password", "192.0.2.1")
    with cli.state_dir.joinpath("state.db").open("rb") as db:
        assert b"another long one" not in db.read()
