"""README "Install on a server", followed literally: mail accepted, blocked, signed and routed.

The commands are the ``sh`` blocks of that README section, in order; tests/integration/
install_driver.py runs them as root in private namespaces (so nothing on this machine
changes) and acts out only what a test must not or cannot do (see its description). It ends
with mail: accepted, blocked, DKIM-signed (verified by dkimpy) and copied to the archive
route, by daemons started from the units `postwarden setup` wrote, as the service user.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import ServiceUser
from tests.harness.fixtures import make_traversable_dir

pytestmark = pytest.mark.postfix

ROOT = Path(__file__).resolve().parents[2]
SECTION = "## Install on a server"


def readme_commands(text: str) -> list[str]:
    """The commands of the README's install section: its ``sh`` blocks, lines joined."""
    start = text.index(SECTION)
    end = text.index("\n## ", start + len(SECTION))
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", text[start:end], re.DOTALL):
        joined = block.replace("\\\n", " ")
        commands += [line.strip() for line in joined.splitlines() if line.strip()]
    return commands


def test_the_readme_section_is_what_the_driver_expects() -> None:
    commands = readme_commands((ROOT / "README.md").read_text())
    assert commands[0].startswith("apt-get install")
    assert any(c.startswith("/opt/postwarden/bin/pip install") for c in commands)
    assert "postwarden setup" in commands
    assert commands.index("postwarden setup") < commands.index("postwarden init example.com")
    enable = "systemctl enable --now postwarden-policyd postwarden-milter"
    apply = next(c for c in commands if c.startswith("postwarden postfix-config --apply"))
    assert commands.index(enable) < commands.index(apply)  # daemons before Postfix asks them


@pytest.fixture(scope="module")
def installed(service_user: ServiceUser) -> Iterator[Any]:
    base = make_traversable_dir("pw-install-")  # the service user reaches NOTIFY_SOCKET there
    try:
        yield _install(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _install(base: Path) -> Any:
    config = base / "config.json"
    result = base / "result.json"
    commands = readme_commands((ROOT / "README.md").read_text())
    config.write_text(json.dumps({"base": str(base), "commands": commands, "result": str(result)}))
    done = subprocess.run(
        [
            *("unshare", "--mount", "--propagation", "private", "--fork", sys.executable),
            *("-m", "tests.integration.install_driver", "phase1", str(config)),
        ],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "MAIL_CONFIG"},  # this machine's
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.exists(), f"exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    data = json.loads(result.read_text())
    assert "error" not in data, json.dumps(data, indent=1)[-12000:]
    return data


def test_every_command_succeeded(installed: Any) -> None:
    failed = [c for c in installed["commands"] if c["rc"] != 0]
    assert not failed, failed
    acted = {c["command"].split()[0] for c in installed["commands"] if c["acted"]}
    assert acted <= {"apt-get", "git", "systemctl"}  # all else ran as written


def test_units_verify_and_daemons_run_as_the_service_user(installed: Any) -> None:
    verify = next(c for c in installed["commands"] if c["command"] == "systemctl daemon-reload")
    assert verify["units"] == ["postwarden-milter.service", "postwarden-policyd.service"]
    assert verify["rc"] == 0 and not verify["err"].strip(), verify["err"]
    uid = str(installed["service_uid"])
    assert sorted(installed["daemons"]) == ["postwarden-milter", "postwarden-policyd"]
    assert {ids["Uid"] for ids in installed["daemons"].values()} == {uid}
    assert {name: s["mode"] for name, s in installed["sockets"].items()} == {
        "policy": "0o660",
        "socketmap": "0o660",
        "milter": "0o660",
    }
    assert {s["uid"] for s in installed["sockets"].values()} == {installed["service_uid"]}


def test_mail_is_blocked_accepted_signed_and_routed(installed: Any) -> None:
    mail = installed["mail"]
    assert re.search(r"<\*\* +554 5\.7\.1 .*blocked by the policy of example\.com", mail["blocked"])
    assert "<~  250 " in mail["accepted"] or "<-  250 2.0.0 Ok: queued" in mail["accepted"]
    assert "Subject: hello bob" in mail["mailbox"]
    assert len(mail["archive"]) == 1 and "Subject: hello bob" in mail["archive"][0]
    assert "bob@example.com" in mail["archive"][0] and "pwroute" not in mail["archive"][0]
    assert len(mail["partner"]) == 1 and "DKIM-Signature:" in mail["partner"][0]
    assert "d=example.com" in re.sub(r"\s", "", mail["partner"][0])
    assert mail["dkim_verified"] == [True]


def test_decisions_reach_the_mail_log(installed: Any) -> None:
    decision = next(
        line for line in installed["mail_log"].splitlines() if "NOQUEUE: reject: RCPT from" in line
    )
    assert decision.startswith("mail.") and "postwarden-policyd[" in decision
    assert "client=" not in decision and "rule=blocked-ip" in decision
