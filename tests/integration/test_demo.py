"""`make run`: the demonstration starts, and its three printed commands do what it says."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.postfix


def test_make_run_shows_the_three_outcomes(traversable_tmp: Path) -> None:
    env = {**os.environ, "POSTWARDEN_DEMO_DIR": str(traversable_tmp / "run")}
    demo = subprocess.Popen(
        [sys.executable, "-m", "postwarden.devrun"],
        env=env,
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
        outputs = [
            subprocess.run(c, capture_output=True, text=True, timeout=60, check=False).stdout
            for c in commands
        ]
        assert re.search(r"<\*\* 554 5\.7\.1 .*blocked by the policy of example\.com", outputs[0])
        assert "250 2.0.0 Ok: queued" in outputs[1] and "250 2.0.0 Ok: queued" in outputs[2]
        run = traversable_tmp / "run"
        mailbox = run / "postfix" / "mail" / "example.com" / "bob" / "new"
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not (
            list(mailbox.glob("*")) and list((run / "sink").rglob("*.*"))
        ):
            time.sleep(0.2)
        (delivered,) = mailbox.glob("*")
        assert "X-Postwarden-Trusted: allowed-ip" in delivered.read_text()
        (relayed,) = (run / "sink").rglob("*.*")
        assert "DKIM-Signature:" in relayed.read_text(errors="replace")
        _log_in_to_the_console("".join(printed))
    finally:
        demo.send_signal(signal.SIGINT)  # Ctrl-C
        demo.communicate(timeout=30)
    leftover = subprocess.run(
        ["pgrep", "-f", str(traversable_tmp / "run")], capture_output=True, text=True, check=False
    ).stdout
    assert not leftover.strip(), f"still running: {leftover}"


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
