"""The shipped postfix-conf/ snippets are what `postfix-config` prints, and they work."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.harness import PostfixInstance, ServiceUser, send
from tests.integration.daemons import Installation, Policyd

pytestmark = pytest.mark.postfix

CONF = Path(__file__).resolve().parents[2] / "postfix-conf"
DEFAULT_POLICY, DEFAULT_SOCKETMAP = "inet:127.0.0.1:10040", "inet:127.0.0.1:10041"


def _lines(name: str) -> list[str]:
    return [x for x in (CONF / name).read_text().splitlines() if x and not x.startswith("#")]


def test_snippets_match_postfix_config_output(
    postfix_factory: Callable[..., PostfixInstance],
    traversable_tmp: Path,
    service_user: ServiceUser,
) -> None:
    postfix = postfix_factory(main_cf={"smtpd_recipient_restrictions": ""})
    installation = Installation(traversable_tmp, service_user)
    printed = installation.cli("postfix-config", "--postfix-config-dir", str(postfix.config_dir))
    lines = [x for x in printed.stdout.splitlines() if x and not x.startswith("#")]
    assert lines == _lines("policyd.main.cf") + _lines("policyd.master.cf")


def test_snippets_wire_a_working_policy_check(
    postfix_factory: Callable[..., PostfixInstance],
    traversable_tmp: Path,
    service_user: ServiceUser,
) -> None:
    installation = Installation(traversable_tmp, service_user)
    installation.cli("block", "add", "203.0.113.0/24")
    policyd = Policyd(installation)
    policyd.start()
    try:
        postfix = postfix_factory()
        service = f"127.0.0.1:{postfix.mx_port}/inet"
        for line in _lines("policyd.main.cf"):
            line = line.replace(DEFAULT_POLICY, policyd.policy_address)
            line = line.replace(DEFAULT_SOCKETMAP, policyd.socketmap_address)
            name, _, value = line.partition(" = ")
            postfix.postconf({name: value}, reload=False)
        postfix.postconf_master(
            *(line.replace("smtp/inet", service, 1) for line in _lines("policyd.master.cf"))
        )
        reply = send(
            postfix.mx_port, "a@ext.example", ["bob@hosted.test"], client_ip="203.0.113.9"
        ).rcpts["bob@hosted.test"]
        assert reply.code == 554 and "blocked" in reply.text
        reply = send(
            postfix.submission_port, "a@ext.example", ["bob@hosted.test"], client_ip="203.0.113.9"
        ).rcpts["bob@hosted.test"]
        assert reply.code == 250  # not asked on other listeners
    finally:
        policyd.stop()
