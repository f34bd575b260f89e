"""`postwarden check --postfix` against a real Postfix configuration."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.harness import PostfixInstance, ServiceUser
from tests.integration.daemons import Installation

pytestmark = pytest.mark.postfix

SETTINGS = """\
version: 1
primary_domain: hosted.test
domains:
  hosted.test:
    tls_policies:
      - {title: t, partners: [partner.example]}
  tabled.test:
  missing.test:
"""


def test_domains_and_relayhost_are_compared(
    postfix_factory: Callable[..., PostfixInstance],
    traversable_tmp: Path,
    service_user: ServiceUser,
) -> None:
    installation = Installation(traversable_tmp, service_user)
    installation.write(SETTINGS)
    postfix = postfix_factory(hosted={"hosted.test": ("alice",), "extra.test": ("bob",)})
    relay = postfix.table("relay_domains", {"tabled.test": "OK"})
    postfix.postconf({"relay_domains": relay, "relayhost": "[127.0.0.1]:2525"}, reload=False)
    done = installation.cli(
        "check", "--postfix", "--postfix-config-dir", str(postfix.config_dir), "--json"
    )
    messages = [w["message"] for w in json.loads(done.stdout)["warnings"]]
    assert any(
        m.startswith("missing.test is hosted in postwarden but Postfix does not receive")
        for m in messages
    ), messages
    assert any(
        m.startswith("Postfix receives mail for extra.test (virtual_mailbox_domains)")
        for m in messages
    ), messages
    assert any(m.startswith("relayhost = [127.0.0.1]:2525") for m in messages), messages
    assert not any("tabled.test" in m or m.startswith("hosted.test") for m in messages), messages
