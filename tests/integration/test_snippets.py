"""The shipped postfix-conf/ snippets are what `postfix-config` prints, and they work."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.harness import PostfixInstance, ServiceUser, send
from tests.integration.daemons import Installation, MilterDaemon, Policyd

pytestmark = pytest.mark.postfix

CONF = Path(__file__).resolve().parents[2] / "postfix-conf"
DEFAULTS = ("inet:127.0.0.1:10040", "inet:127.0.0.1:10041", "inet:127.0.0.1:10042")


def _lines(name: str) -> list[str]:
    return [x for x in (CONF / name).read_text().splitlines() if x and not x.startswith("#")]


def test_snippets_match_postfix_config_output(
    postfix_factory: Callable[..., PostfixInstance],
    traversable_tmp: Path,
    service_user: ServiceUser,
) -> None:
    postfix = postfix_factory(
        main_cf={
            "smtpd_recipient_restrictions": "",
            "transport_maps": "",
            "virtual_mailbox_maps": "",
            "virtual_mailbox_domains": "",
        }
    )
    installation = Installation(traversable_tmp, service_user)
    printed = installation.cli("postfix-config", "--postfix-config-dir", str(postfix.config_dir))
    lines = [x for x in printed.stdout.splitlines() if x and not x.startswith("#")]
    assert lines == _lines("postwarden.main.cf") + _lines("postwarden.master.cf")


def test_snippets_wire_working_daemons(
    postfix_factory: Callable[..., PostfixInstance],
    traversable_tmp: Path,
    service_user: ServiceUser,
) -> None:
    installation = Installation(traversable_tmp, service_user)
    installation.cli("block", "add", "203.0.113.0/24")
    installation.cli("spam-rule", "add", "pills", "--field", "subject", "--pattern", "pills")
    policyd = Policyd(installation)
    milter = MilterDaemon(installation, policyd)
    policyd.start()
    milter.start()
    try:
        postfix = postfix_factory()
        addresses = (policyd.policy_address, policyd.socketmap_address, milter.address)
        for line in _lines("postwarden.main.cf"):
            for default, address in zip(DEFAULTS, addresses, strict=True):
                line = line.replace(default, address)
            name, _, value = line.partition(" = ")
            postfix.postconf({name: value}, reload=False)
        services = {
            "smtp/inet": f"127.0.0.1:{postfix.mx_port}/inet",
            "submission/inet": f"127.0.0.1:{postfix.submission_port}/inet",
        }
        settings = []
        for line in _lines("postwarden.master.cf"):
            for default, address in zip(DEFAULTS, addresses, strict=True):
                line = line.replace(default, address)
            line = line.replace("127.0.0.1:10046", f"127.0.0.1:{postfix.handback_port}")
            service = "/".join(line.partition("=")[0].split("/")[:2])
            settings.append(line.replace(service, services.get(service, service), 1))
        postfix.postconf_master(*settings)
        reply = send(
            postfix.mx_port, "a@ext.example", ["bob@hosted.test"], client_ip="203.0.113.9"
        ).rcpts["bob@hosted.test"]
        assert reply.code == 554 and "blocked" in reply.text
        result = send(
            postfix.mx_port,
            "a@ext.example",
            ["bob@hosted.test"],
            client_ip="198.51.100.9",
            headers={"Subject": "pills"},
        )
        assert result.queue_id
        (delivered,) = postfix.wait_for_mailbox("bob@hosted.test")
        assert delivered.message["X-Postwarden-Spam"] == "pills"
        # submission is not asked by the policy daemon (blocked IP, yet accepted)
        reply = send(
            postfix.submission_port, "a@ext.example", ["bob@hosted.test"], client_ip="203.0.113.9"
        ).rcpts["bob@hosted.test"]
        assert reply.code == 250
    finally:
        milter.stop()
        policyd.stop()
