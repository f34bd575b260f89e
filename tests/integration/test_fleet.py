"""A fleet of three MX nodes on one PostgreSQL store, each with its own Postfix and daemons.

A change made with the command line on one node is enforced by every node's Postfix; a
DKIM key made and verified on one node signs on all; blocks refused anywhere are counted in
one block history. With PostgreSQL stopped mail keeps flowing on the last good settings, a
node restarted meanwhile starts on its cache, edits are refused naming the database, and
once it is back every recorded block arrives exactly once.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import dkim
import dns.message
import dns.query
import dns.rdatatype
import psycopg
import pytest
from cryptography.fernet import Fernet

from postwarden.settings.load import dump
from postwarden.settings.store import read_settings
from tests.harness import PostfixInstance, ServiceUser, SmtpSink, send
from tests.harness.postgres import INTRUDER_PASSWORD, PostgresCluster
from tests.harness.wait import wait_until
from tests.integration.daemons import Installation, Policyd
from tests.integration.dns import DnsServer, running_dns_server
from tests.integration.fleet import Fleet, running_fleet
from tests.integration.webconsole import WebConsole, csrf_of, login

pytestmark = pytest.mark.postfix

EXAMPLE = Path(__file__).resolve().parents[2] / "postfix-conf" / "settings.example.yaml"
BLOCKED = "203.0.113.0/24"
PROBE = "203.0.113.99"  # asked of every worker directly: is the block in force?


def _counts(fleet: Fleet, clients: list[str]) -> dict[str, int]:
    """Blocks by *BLOCKED* per client, as the database has them."""
    rows = fleet.sql(
        "SELECT client_ip, count FROM block_history WHERE entry = %s AND client_ip = ANY(%s)",
        BLOCKED,
        clients,
    )
    return {str(client): int(count) for client, count in rows}  # type: ignore[call-overload]


def _diagnosis(fleet: Fleet) -> str:
    """What the nodes' spools hold and their daemons logged, for a failed wait."""
    lines = [f"\nblock_history: {fleet.sql('SELECT * FROM block_history')}"]
    for node in fleet.nodes:
        lines.append(f"{node.name}: spool {node.spool_backlog()} events")
        lines += [f"  {x}" for x in node.policyd.log_text().splitlines() if "NOQUEUE" not in x]
    return "\n".join(lines)


def inbound(postfix: PostfixInstance, client_ip: str, rcpt: str = "bob@hosted.test") -> int:
    """Offer one message from *client_ip* to *rcpt* on port 25; the RCPT reply code."""
    result = send(postfix.mx_port, "someone@sender.example", [rcpt], client_ip=client_ip)
    return result.rcpts[rcpt].code


@pytest.fixture
def fleet(
    traversable_tmp: Path,
    service_user: ServiceUser,
    pg_url: str,
    postfix_factory: Callable[..., PostfixInstance],
) -> Iterator[Fleet]:
    with running_fleet(traversable_tmp, service_user, pg_url, postfix_factory) as fleet:
        yield fleet


def test_an_edit_on_one_node_is_enforced_by_every_node_and_blocks_meet_in_one_list(
    fleet: Fleet,
) -> None:
    node1, node2, node3 = fleet.nodes
    for node in fleet.nodes:
        assert inbound(node.postfix, "203.0.113.5") == 250
    node1.inst.cli("block", "add", BLOCKED, "--note", "fleet test")
    digest = fleet.digest()
    wait_until(lambda: fleet.all_apply(digest), "every node applies the new settings")
    for node in fleet.nodes:
        wait_until(lambda n=node: n.refuses(PROBE), f"every worker of {node.name}")
    for index, node in enumerate(fleet.nodes, start=1):
        for _ in range(index):  # node N refuses N messages from its own client
            assert inbound(node.postfix, f"203.0.113.{10 + index}") == 554
    clients = {f"203.0.113.{10 + i}": i for i in (1, 2, 3)}  # what each node refused
    wait_until(
        lambda: (
            sum(n.spool_backlog() for n in fleet.nodes) == 0
            and _counts(fleet, list(clients)) == clients
        ),
        "every node's blocks in the database",
        details=lambda: _diagnosis(fleet),
    )
    probed = _counts(fleet, [PROBE]).get(PROBE, 0)  # the workers' checks above
    listing = node1.inst.cli_json("block", "list", "--sort", "recent")
    rows = {row["entry"]: row for row in listing["entries"]}
    assert rows[BLOCKED]["blocks"] == 1 + 2 + 3 + probed
    assert rows[BLOCKED]["clients"] == 3 + (probed > 0)
    attempts = node1.inst.cli_json("block", "history", "--since", "1h")["attempts"]
    assert sorted(a["client"] for a in attempts if a["client"] != PROBE) == [
        "203.0.113.11",
        *["203.0.113.12"] * 2,
        *["203.0.113.13"] * 3,
    ]
    assert {(a["recipient"], a["entry"], a["refused_by"]) for a in attempts} == {
        ("bob@hosted.test", BLOCKED, "policyd")
    }
    # Every node's decisions replay on node 2: without the block, the refused are let in.
    refused = 6 + probed
    wait_until(
        lambda: fleet.sql("SELECT count(*) FROM decisions")[0][0] >= 3 + refused,
        "every node's decisions in the database",
    )
    proposed = node2.inst.base / "proposed.yaml"
    node2.inst.cli("store", "export", str(proposed))
    proposed.write_text(proposed.read_text().replace(f"- ip: {BLOCKED}", "- ip: 192.0.2.250"))
    replayed = node2.inst.cli_json("what-if", str(proposed), "--since", "1h")
    assert replayed["replayed"] >= 3 + refused, replayed
    assert replayed["newly_allowed"]["count"] == refused, replayed
    # The entry was listed a moment ago: prune keeps it, saying why.
    pruned = node3.inst.cli_json("block", "prune", "--unused-for", "1", "--dry-run")
    assert pruned["would_delete"] == [] and pruned["kept"][0]["entry"] == BLOCKED, pruned
    status = node2.inst.cli_json("status")
    assert {n["name"] for n in status["nodes"]} == {"node1", "node2", "node3"}
    assert all(n["behind"] == 0 for n in status["nodes"]), status["nodes"]
    assert status["healthy"], status
    assert node3.inst.cli("history").stdout.count("block add") == 1
    store = node1.inst.cli_json("store", "status")
    assert store["backlog"] == 0 and len(store["nodes"]) == 3
    assert [n["name"] for n in store["nodes"] if n["this_node"]] == ["node1"]
    text = node3.inst.cli("status").stdout
    for node in fleet.nodes:
        assert f"node {node.name}: version 2 (current)" in text


def test_the_web_console_on_one_node_edits_the_whole_fleet(fleet: Fleet) -> None:
    node1, node2, node3 = fleet.nodes
    console = WebConsole(node1.inst).start()
    try:
        console.add_user("alice")
        with console.client() as client:
            login(client, "alice")
            token = csrf_of(client, "/d/hosted.test/blocked")
            done = client.post(
                "/d/hosted.test/blocked/add", data={"csrf": token, "entries": "198.51.100.66"}
            )
            assert done.status_code == 200 and "1 added" in done.text
            digest = fleet.digest()
            wait_until(lambda: fleet.all_apply(digest), "every node applies the console's edit")
            wait_until(lambda: node3.refuses("198.51.100.66"), "every worker of node3")
            status = client.get("/status")
            for node in fleet.nodes:
                assert node.name in status.text
    finally:
        console.stop()
    assert inbound(node3.postfix, "198.51.100.66") == 554
    history = node2.inst.cli("history").stdout
    assert (
        "alice" in history and "web login of 'alice'" in node2.inst.cli("history", "--diff").stdout
    )


def test_dkim_key_made_and_verified_on_one_node_signs_on_all(
    traversable_tmp: Path,
    service_user: ServiceUser,
    pg_url: str,
    postfix_factory: Callable[..., PostfixInstance],
    smtp_sink: SmtpSink,
) -> None:
    key_file = traversable_tmp / "dkim.key"
    key_file.write_bytes(Fernet.generate_key())
    os.chown(key_file, 0, service_user.gid)
    key_file.chmod(0o640)
    url = f"{pg_url}?dkim_key_file={key_file}"
    routes = {"ext.example": smtp_sink.nexthop}
    with (
        running_dns_server(("hosted.test",)) as dns_server,
        running_fleet(traversable_tmp, service_user, url, postfix_factory, routes=routes) as fleet,
    ):
        node2 = fleet.nodes[1]
        created = node2.inst.cli_json("dkim", "create", "--selector", "fleet")
        dns_server.set_txt(created["host"], created["txt_strings"])
        node2.inst.cli("dkim", "verify", "--nameserver", dns_server.address)
        for node in fleet.nodes:
            wait_until(
                lambda n=node: "DKIM keys in use: d=hosted.test s=fleet" in n.milter.log_text(),
                f"{node.name}'s milter signs with the new key",
            )
        for count, node in enumerate(fleet.nodes, start=1):
            result = send(
                node.postfix.submission_port,
                "alice@hosted.test",
                ["x@ext.example"],
                client_ip="192.0.2.1",
                sasl_user="alice",
                headers={"From": "alice@hosted.test", "Subject": f"from {node.name}"},
            )
            assert result.queue_id, result
            message = smtp_sink.wait_for(count)[-1]
            assert message.message["Subject"] == f"from {node.name}"
            assert _verifies(message.raw, dns_server), node.name
        # The private key is sealed in the database and hidden from other roles.
        (material,) = fleet.sql("SELECT material FROM dkim_private_keys")[0]
        assert b"PRIVATE KEY" not in bytes(material)  # type: ignore[arg-type]
    for log in traversable_tmp.rglob("*.log"):
        assert "pw-fleet-secret" not in log.read_text(errors="replace"), log


def _verifies(raw: bytes, dns_server: DnsServer) -> bool:
    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        query = dns.message.make_query(name.decode().rstrip("."), dns.rdatatype.TXT)
        answer = dns.query.udp(query, "127.0.0.1", port=dns_server.port, timeout=3)
        return b"".join(b"".join(r.strings) for rrset in answer.answer for r in rrset)

    return bool(dkim.verify(raw, dnsfunc=dnsfunc))


def test_without_notifications_every_node_applies_an_edit_by_polling(
    traversable_tmp: Path,
    service_user: ServiceUser,
    pg_url: str,
    postfix_factory: Callable[..., PostfixInstance],
) -> None:
    url = f"{pg_url}?poll_seconds=1"
    with running_fleet(traversable_tmp, service_user, url, postfix_factory) as fleet:
        # What a pooler in transaction mode does to LISTEN: no announcement ever arrives.
        fleet.sql("ALTER TABLE settings_versions DISABLE TRIGGER settings_announce")
        fleet.nodes[1].inst.cli("block", "add", BLOCKED)
        digest = fleet.digest()
        wait_until(lambda: fleet.all_apply(digest), "every node polls the new settings")
        for node in fleet.nodes:
            wait_until(lambda n=node: n.refuses(PROBE), f"every worker of {node.name}")
            assert inbound(node.postfix, "203.0.113.40") == 554


def test_with_the_database_down_mail_flows_edits_are_refused_and_nothing_is_lost(
    fleet: Fleet, pg_cluster: PostgresCluster
) -> None:
    node1, node2, node3 = fleet.nodes
    node1.inst.cli("block", "add", BLOCKED)
    digest = fleet.digest()
    wait_until(lambda: fleet.all_apply(digest), "every node applies the block")
    for node in fleet.nodes:
        wait_until(lambda n=node: n.refuses(PROBE), f"every worker of {node.name}")
    pg_cluster.stop()
    sent = {node.name: 0 for node in fleet.nodes}

    def refuse_some() -> None:
        for index, node in enumerate(fleet.nodes, start=1):
            for _ in range(2):
                assert inbound(node.postfix, f"203.0.113.{20 + index}") == 554
                sent[node.name] += 1
            assert inbound(node.postfix, "198.51.100.1", "alice@hosted.test") == 250

    refuse_some()
    refused = node2.inst.cli("block", "add", "192.0.2.99", check=False)
    assert refused.returncode == 1
    shown = fleet.url.replace(":pw-fleet-secret", "")
    assert f"the settings database {shown.split('?')[0]} is unavailable" in refused.stderr
    assert "pw-fleet-secret" not in refused.stderr
    for daemon in (node3.policyd, node3.milter):
        daemon.stop()
        daemon.start()  # starts on its cached settings
        assert "starting on the settings cached" in daemon.log_text()
    refuse_some()
    for node in fleet.nodes:
        node.postfix.wait_for_mailbox("alice@hosted.test", 2)
        # Blocks reach the spool through the writer's queue, a moment after the refusal.
        wait_until(
            lambda n=node: n.spooled_blocks(f"203.0.113.{20 + int(n.name[-1])}") == sent[n.name],
            f"{node.name}'s refusals in its spool",
        )
    pg_cluster.start()
    wait_until(
        lambda: sum(n.spool_backlog() for n in fleet.nodes) == 0,
        "every node's spool shipped",
        timeout=30,
    )
    expected = {f"203.0.113.{20 + i}": sent[f"node{i}"] for i in (1, 2, 3)}
    assert _counts(fleet, list(expected)) == expected
    node2.inst.cli("block", "add", "192.0.2.99")  # edits work again
    digest = fleet.digest()
    wait_until(lambda: fleet.all_apply(digest), "every node applies the edit made after")


def test_concurrent_edits_on_three_nodes_lose_nothing(
    traversable_tmp: Path, service_user: ServiceUser, pg_url: str
) -> None:
    first = Installation(traversable_tmp / "setup", service_user)
    first.cli("--store", pg_url, "store", "init")
    nodes = [
        Installation(traversable_tmp / f"n{i}", service_user, store=pg_url, node=f"n{i}")
        for i in range(3)
    ]
    errors: list[str] = []

    def add(index: int) -> None:
        done = nodes[index % 3].cli("block", "add", f"198.18.0.{index}", check=False)
        if done.returncode:
            errors.append(done.stderr)

    threads = [threading.Thread(target=add, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    listed = {row["entry"] for row in nodes[0].cli_json("block", "list")["entries"]}
    assert listed == {f"198.18.0.{i}" for i in range(8)}
    with psycopg.connect(pg_url) as conn:
        versions = conn.execute("SELECT count(*) FROM settings_versions").fetchone()
        edits = conn.execute("SELECT count(*) FROM audit WHERE command LIKE '%block add%'")
        assert versions is not None and versions[0] == 1 + 8
        assert edits.fetchone() == (8,)


def test_import_then_export_round_trips_the_example_settings(
    traversable_tmp: Path, service_user: ServiceUser, pg_url: str, pg_cluster: PostgresCluster
) -> None:
    node = Installation(traversable_tmp / "node", service_user)
    node.cli("--store", pg_url, "store", "init")
    node.cli("--store", pg_url, "store", "import", str(EXAMPLE))
    exported = traversable_tmp / "exported.yaml"
    node.cli("--store", pg_url, "store", "export", str(exported))
    canonical = dump(read_settings(EXAMPLE).settings).encode()
    assert hashlib.sha256(exported.read_bytes()).digest() == hashlib.sha256(canonical).digest()
    assert read_settings(exported).settings == read_settings(EXAMPLE).settings
    # ... and the file store takes the export as its settings file.
    checked = node.cli("--settings", str(exported), "check")
    assert "valid" in checked.stdout
    # Importing the same file again changes nothing; a bad file changes nothing either.
    again = node.cli_json("--store", pg_url, "store", "import", str(EXAMPLE))
    assert again["changed"] is False
    bad = traversable_tmp / "bad.yaml"
    bad.write_text("version: 1\nprimary_domain: 'not a domain'\n")
    refused = node.cli("--store", pg_url, "store", "import", str(bad), check=False)
    assert refused.returncode == 1 and "bad.yaml:2" in refused.stderr
    with psycopg.connect(pg_url) as conn:
        count = conn.execute("SELECT count(*) FROM settings_versions").fetchone()
        assert count == (1,)
    # Another role that may connect reads neither the keys nor the settings.
    intruder = pg_cluster.url(pg_url.rsplit("/", 1)[1], "intruder", INTRUDER_PASSWORD)
    with psycopg.connect(intruder, autocommit=True) as conn:
        for table in ("dkim_private_keys", "settings_versions", "web_users"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f"SELECT * FROM {table}")


def test_a_single_host_moves_to_the_database_settings_and_dkim_key_as_the_readme_says(
    traversable_tmp: Path, service_user: ServiceUser, pg_url: str
) -> None:
    host = Installation(traversable_tmp / "host", service_user)  # file store, hosted.test
    with running_dns_server(("hosted.test",)) as dns_server:
        created = host.cli_json("dkim", "create", "--selector", "old")
        dns_server.set_txt(created["host"], created["txt_strings"])
        host.cli("dkim", "verify", "--nameserver", dns_server.address)
        # README "Fleet": store init, store import, then each key with dkim import + verify.
        host.cli("--store", pg_url, "store", "init")
        host.cli("--store", pg_url, "store", "import", str(host.settings))
        pem = host.state_dir / "dkim" / "hosted.test" / "old.pem"
        host.cli("--store", pg_url, "dkim", "import", "--selector", "old", "--key-file", str(pem))
        moved = host.cli_json(
            "--store", pg_url, "dkim", "verify", "--nameserver", dns_server.address
        )
    assert moved["ok"] is True
    shown = host.cli_json("--store", pg_url, "dkim", "show")
    assert shown["signing_selector"] == "old"


def test_daemons_name_the_database_when_they_cannot_start(
    traversable_tmp: Path, service_user: ServiceUser, pg_url: str, pg_cluster: PostgresCluster
) -> None:
    node = Installation(traversable_tmp / "node", service_user)
    node.cli("--store", pg_url, "store", "init")
    node.cli("--store", pg_url, "init", "hosted.test")
    pg_cluster.stop()
    down = Installation(traversable_tmp / "down", service_user, store=pg_url, init=False)
    policyd = Policyd(down)
    with pytest.raises(RuntimeError):
        policyd.start()
    text = policyd.log_text()
    assert re.search(r"settings database postgresql://postwarden@127\.0\.0\.1:\d+/\w+ is", text)
    assert "no cached settings" in text
