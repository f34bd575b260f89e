"""A fleet of postwarden nodes on one PostgreSQL store, for integration tests and the bench.

Description:
    :class:`Fleet` builds N nodes on loopback, each what one MX host of a site runs: its own
    state directory, ``postwarden-policyd`` and ``postwarden-milter`` as the service user
    with ``--store postgresql://...`` (and ``POSTWARDEN_NODE=nodeN``), and its own private
    Postfix wired to them. The store's schema is made with ``postwarden store init``; the
    first node's ``postwarden init`` creates the settings, the others find them.

    Helpers tell what a node applies (the settings digest its daemons report in the node's
    own state database) and what the database holds, so tests wait for the thing itself.
"""

from __future__ import annotations

import contextlib
import socket
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg

from tests.harness import PostfixInstance, ServiceUser
from tests.integration.daemons import Installation, MilterDaemon, Policyd, wire


@dataclass
class Node:
    name: str
    inst: Installation
    policyd: Policyd
    milter: MilterDaemon
    postfix: PostfixInstance

    def applied(self) -> set[str]:
        """The settings digests this node's daemons report they answer with."""
        path = self.inst.state_dir / "state.db"
        if not path.exists():
            return set()
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            try:
                return {row[0] for row in db.execute("SELECT digest FROM daemon_status")}
            except sqlite3.Error:
                return set()

    def refuses(self, client_ip: str, connections: int = 4) -> bool:
        """Whether policyd refuses *client_ip* on every one of a few connections at once.

        Connections opened together are spread over the daemon's workers, so this tells
        that every worker applies a change, not only the one that reports its version.
        """
        request = (
            "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n"
            f"client_address={client_ip}\nclient_name=unknown\nhelo_name=h.test\n"
            "sender=someone@sender.example\nrecipient=bob@hosted.test\n\n"
        ).encode()
        address = ("127.0.0.1", self.policyd.policy_port)
        with contextlib.ExitStack() as stack:
            conns = [
                stack.enter_context(socket.create_connection(address, timeout=5))
                for _ in range(connections)
            ]
            answers = []
            for conn in conns:
                conn.sendall(request)
                answers.append(conn.recv(4096))
        return all(answer.startswith(b"action=5") for answer in answers)

    def spooled_blocks(self, client_ip: str) -> int:
        """Blocks of *client_ip* waiting in the node's spool."""
        path = self.inst.state_dir / "spool.db"
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            rows = db.execute("SELECT line FROM events WHERE kind = 'block'").fetchall()
        lines = (line for (text,) in rows for line in text.splitlines())
        return sum(1 for line in lines if line.split("\t")[3] == client_ip)

    def spool_backlog(self, kind: str = "%") -> int:
        """Events waiting in the node's spool (of *kind*: 'block' or 'decision')."""
        path = self.inst.state_dir / "spool.db"
        if not path.exists():
            return 0
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            query = "SELECT coalesce(sum(n), 0) FROM events WHERE kind LIKE ?"
            return int(db.execute(query, (kind,)).fetchone()[0])


class Fleet:
    """N nodes on one store (see the module description)."""

    def __init__(
        self,
        base: Path,
        user: ServiceUser,
        url: str,
        postfix_factory: Callable[..., PostfixInstance],
        *,
        count: int = 3,
        hosted: dict[str, tuple[str, ...]] | None = None,
        routes: dict[str, str] | None = None,
    ) -> None:
        self.url = url
        self.nodes: list[Node] = []
        hosted = hosted or {"hosted.test": ("alice", "bob")}
        for index in range(1, count + 1):
            name = f"node{index}"
            inst = Installation(base / name, user, store=url, node=name, init=index > 1)
            if index == 1:
                inst.cli("store", "init")
                inst.cli("init", next(iter(hosted)))
            policyd = Policyd(inst)
            milter = MilterDaemon(inst, policyd)
            postfix = postfix_factory(hosted=hosted, routes=routes or {})
            self.nodes.append(Node(name, inst, policyd, milter, postfix))
        try:
            for node in self.nodes:
                node.policyd.start()
                node.milter.start()
                wire(node.postfix, node.policyd, node.milter)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for node in self.nodes:
            node.milter.stop()
            node.policyd.stop()

    def sql(self, statement: str, *params: object) -> list[tuple[object, ...]]:
        with psycopg.connect(self.url.split("?")[0], autocommit=True) as conn:
            cursor = conn.execute(statement, params or None)
            return cursor.fetchall() if cursor.description is not None else []

    def digest(self) -> str:
        """The digest of the newest settings version in the database."""
        return str(
            self.sql("SELECT digest FROM settings_versions ORDER BY version DESC LIMIT 1")[0][0]
        )

    def all_apply(self, digest: str) -> bool:
        """Whether every daemon of every node answers with *digest*."""
        return all(node.applied() == {digest} for node in self.nodes)


@contextlib.contextmanager
def running_fleet(*args: object, **kwargs: object) -> Iterator[Fleet]:
    fleet = Fleet(*args, **kwargs)  # type: ignore[arg-type]
    try:
        yield fleet
    finally:
        fleet.stop()
