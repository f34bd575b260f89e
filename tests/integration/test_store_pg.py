"""The service layer on the PostgreSQL store: the same operations as on a file store.

Web users and sessions, DKIM keys, the audit trail and the dry run go through the shared
state queries on a real PostgreSQL (the fleet tests drive the daemons).
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from postwarden.admin import dkim, history, iplists, web_users
from postwarden.admin.errors import BadInput
from postwarden.admin.session import Actor, Admin
from postwarden.settings.model import DomainBlock, Settings
from postwarden.settings.store import SettingsExist
from postwarden.store import AuditNote, StoreUnavailable, open_store
from tests.harness.postgres import PostgresCluster

pytestmark = pytest.mark.postfix


@pytest.fixture
def admin(pg_url: str, tmp_path: Path) -> Admin:
    store = open_store(pg_url, settings_path=tmp_path / "unused.yaml", state_dir=tmp_path)
    store.initialize()
    store.create(
        Settings(primary_domain="hosted.test", domains={"hosted.test": DomainBlock()}),
        AuditNote("root", "command", "postwarden init hosted.test"),
    )
    return Admin(store, Actor("root", "command", "test"))


def test_web_users_sessions_and_their_trail(admin: Admin) -> None:
    user = web_users.add(admin, "ops@example.com", "admin", None, "correct horse battery")
    assert user.role == "admin"
    with pytest.raises(BadInput, match="exists already"):
        web_users.add(admin, "ops@example.com", "admin", None, "correct horse battery")
    with pytest.raises(web_users.LoginRefused):
        web_users.login(admin, "ops@example.com", "wrong password!", "192.0.2.1")
    session = web_users.login(admin, "ops@example.com", "correct horse battery", "192.0.2.1")
    found = web_users.session(admin, session.token)
    assert found is not None and found.user.name == "ops@example.com"
    web_users.logout(admin, session.token)
    assert web_users.session(admin, session.token) is None
    texts = [entry.diff for entry in history.entries(admin, 10)]
    assert any("web login refused" in t for t in texts)
    assert any("web login of 'ops@example.com'" in t for t in texts)


def test_dkim_keys_live_in_the_database(admin: Admin) -> None:
    new = dkim.create(admin, None, selector="s1")
    assert "dkim_private_keys" in new.key_file
    domain, _block, views = dkim.show(admin, None)
    assert domain == "hosted.test"
    assert [v.record.txt if v.record else None for v in views] == [new.record.txt]
    name, row, removed = dkim.delete(admin, None, "s1")
    assert (name, row.selector, removed) == ("hosted.test", "s1", True)


def test_dry_run_writes_nothing_and_edits_are_recorded(admin: Admin, pg_url: str) -> None:
    dry = Admin(admin.store, admin.actor, dry_run=True)
    preview = iplists.add(dry, None, "blocked_ips", ["192.0.2.0/24"], "x")
    assert preview.change.dry_run and preview.change.changed
    assert "192.0.2.0/24" in preview.change.diff
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM settings_versions").fetchone() == (1,)
    iplists.add(admin, None, "blocked_ips", ["192.0.2.0/24"], "x")
    listing = iplists.listing(admin, None, "blocked_ips", sort="recent")
    assert [row.entry for row in listing.rows] == ["192.0.2.0/24"]
    newest = history.entries(admin, 1)[0]
    assert newest.command == "test" and "+    - ip: 192.0.2.0/24" in newest.diff
    with pytest.raises(SettingsExist):
        admin.store.create(admin.read().settings, AuditNote("root", "command", "init"))


def test_a_database_that_is_away_is_named_and_nothing_changes(
    admin: Admin, pg_cluster: PostgresCluster
) -> None:
    pg_cluster.stop()
    with pytest.raises(StoreUnavailable, match=r"postgresql://postwarden@127\.0\.0\.1:\d+/"):
        iplists.add(admin, None, "blocked_ips", ["192.0.2.7"], None)
    with pytest.raises(StoreUnavailable) as raised:
        admin.read()
    assert "pw-fleet-secret" not in str(raised.value)
