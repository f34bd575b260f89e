"""`make run`: the demonstration starts on the ports it is given, and its three printed
commands do what it says; a busy port is named and nothing starts."""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.demo import PORTS
from tests.harness import free_port
from tests.harness.wait import wait_until

pytestmark = pytest.mark.postfix
ROOT = Path(__file__).resolve().parents[2]


def _environment(run: Path, ports: dict[str, int]) -> dict[str, str]:
    env = {**os.environ, "POSTWARDEN_DEMO_DIR": str(run)}
    env.update({PORTS[name].variable: str(port) for name, port in ports.items()})
    return env


def _ports() -> dict[str, int]:
    """A distinct free port for each (free_port() may give the same one twice)."""
    ports: dict[str, int] = {}
    while len(set(ports.values())) < len(PORTS):
        ports = {name: free_port() for name in PORTS}
    return ports


def _leftovers(run: Path) -> str:
    return subprocess.run(
        ["pgrep", "-af", str(run)], capture_output=True, text=True, check=False
    ).stdout.strip()


def test_make_run_shows_the_three_outcomes(traversable_tmp: Path) -> None:
    run = traversable_tmp / "run"
    ports = _ports()  # not the defaults: tests run side by side
    demo = subprocess.Popen(
        [sys.executable, "-m", "tests.demo"],
        cwd=ROOT,
        env=_environment(run, ports),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        printed = []
        assert demo.stdout is not None
        for line in demo.stdout:
            printed.append(line)
            if "Ctrl-C stops everything" in line:
                break
        commands = [shlex.split(x.strip()) for x in printed if x.strip().startswith("swaks ")]
        assert len(commands) == 3, "".join(printed)
        assert f"--server 127.0.0.1:{ports['smtp']}" in " ".join(commands[0])
        outputs = [
            subprocess.run(c, capture_output=True, text=True, timeout=60, check=False).stdout
            for c in commands
        ]
        assert re.search(r"<\*\* 554 5\.7\.1 .*blocked by the policy of example\.com", outputs[0])
        assert "250 2.0.0 Ok: queued" in outputs[1] and "250 2.0.0 Ok: queued" in outputs[2]
        mailbox = run / "postfix" / "mail" / "example.com" / "bob" / "new"
        (delivered,) = wait_until(lambda: list(mailbox.glob("*")), "bob's mail", 15)
        assert "X-Postwarden-Trusted: allowed-ip" in delivered.read_text()
        dumps = run / "sink" / "dump"  # written while the message arrives: wait for all of it
        wait_until(
            lambda: any(
                "DKIM-Signature:" in p.read_text(errors="replace") for p in dumps.iterdir()
            ),
            "the relayed message, DKIM-signed, at the sink",
            15,
        )
        assert len(list(dumps.iterdir())) == 1
        owner = {p.stat().st_uid for p in (run / "state").iterdir()}
        assert len(owner) == 1 and 0 not in owner  # the daemons run as the service user
        _log_in_to_the_console("".join(printed))
    finally:
        demo.send_signal(signal.SIGINT)  # Ctrl-C
        demo.communicate(timeout=60)
    assert demo.returncode == 0
    assert not _leftovers(run), f"still running: {_leftovers(run)}"


def test_a_busy_port_is_named_and_nothing_starts(traversable_tmp: Path) -> None:
    run = traversable_tmp / "run"
    ports = _ports()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", ports["policy"]))
        busy.listen()
        done = subprocess.run(
            [sys.executable, "-m", "tests.demo"],
            cwd=ROOT,
            env=_environment(run, ports),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 1
    assert f"port {ports['policy']} for policyd is in use" in done.stderr
    assert "POSTWARDEN_DEMO_POLICY_PORT=N make run" in done.stderr
    assert "nothing was started" in done.stderr and "try:" not in done.stdout
    assert not run.exists() and not _leftovers(run)


def _log_in_to_the_console(printed: str) -> None:
    """The printed URL and credentials of the console work."""
    found = re.search(r"web console: (\S+)  user: (\S+)  password: (\S+)", printed)
    assert found, printed
    url, user, password = found.groups()
    with httpx.Client(base_url=url, follow_redirects=True, timeout=30) as client:
        form = client.get("/login")
        token = re.search(r'name="login_token" value="([^"]+)"', form.text)
        assert token
        page = client.post(
            "/login",
            data={"login_token": token.group(1), "name": user, "password": password},
        )
    assert page.status_code == 200 and "Hosted domains" in page.text
