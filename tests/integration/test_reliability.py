"""Reliability: a full disk under the state database, key material never in logs."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import ServiceUser
from tests.integration.daemons import Installation, Policyd

REQUEST = (
    b"request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=203.0.113.%d\n"
    b"recipient=bob@hosted.test\n\n"
)


@pytest.fixture
def small_disk(
    traversable_tmp: Path, service_user: ServiceUser
) -> Iterator[tuple[Installation, Path]]:
    installation = Installation(traversable_tmp, service_user)
    state = installation.state_dir
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0750", "tmpfs", str(state)], check=True
    )
    try:
        os.chown(state, service_user.uid, service_user.gid)
        yield installation, state
    finally:
        subprocess.run(["umount", "-l", str(state)], check=False)


def _ask(policyd: Policyd, count: int, first: int = 1) -> list[bytes]:
    answers = []
    with socket.create_connection(("127.0.0.1", policyd.policy_port), timeout=5) as conn:
        for i in range(first, first + count):
            conn.sendall(REQUEST % i)
            answers.append(conn.recv(4096))
    return answers


def test_a_full_disk_never_stops_the_answers(small_disk: tuple[Installation, Path]) -> None:
    installation, state = small_disk
    installation.cli("block", "add", "203.0.113.0/24")
    policyd = Policyd(installation)
    policyd.start()
    try:
        filler = state / "filler"
        subprocess.run(
            ["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True, check=False
        )  # until the disk is full
        answers = _ask(policyd, 200)
        assert all(a.startswith(b"action=554 5.7.1") for a in answers)
        policyd.stop()  # flushes what it could; the error must be in the log
        assert "state not recorded" in policyd.log_text()
        filler.unlink()
        policyd.start()
        assert all(a.startswith(b"action=554") for a in _ask(policyd, 5, first=201))
    finally:
        policyd.stop()
    entries = installation.cli_json("block", "list", "--sort", "recent")["entries"]
    assert entries[0]["blocks"] >= 5  # recording resumed once there was room
