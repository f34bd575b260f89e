"""``explain --via-gateway`` and the milter agree, row by row (one decision module).

For each row, ``explain`` is asked about gateway mail with an original IP (or none: the
Received walk could not read the gateway's header), and the milter's plan is computed for
the same message carrying a Received header the gateway wrote for that IP (or one it could
not read). Both must say the same: recipient removed, trusted, spam rules run.
"""

from __future__ import annotations

import pytest

from postwarden.milter.verdict import MessageFacts, plan_message
from postwarden.milter.view import compile_view
from postwarden.settings.load import load_text
from postwarden.settings.snapshot import compile_settings
from tests.unit.conftest import Cli

SETTINGS = """\
version: 1
primary_domain: gw.test
domains:
  gw.test:
    allowed_ips: [198.51.100.77, 203.0.113.5]
    blocked_ips: [203.0.113.0/24]
    spam_rules: [{name: pills, field: subject, pattern: '(?i)pills'}]
    gateway: {enabled: true, ips: [192.0.2.25, 192.0.2.26], skip_spam_filter: true}
  plain.test:
    blocked_ips: [203.0.113.0/24]
    spam_rules: [{name: pills, field: subject, pattern: '(?i)pills'}]
    gateway: {enabled: true, ips: [192.0.2.25]}
"""
UNREADABLE = "from x (y [198.51.100.77]) by z (unknown [203.0.113.9])\n\tby gw (Postfix)"

# (recipient, original IP or None = unknown, removed, trusted, spam rules run)
ROWS = [
    ("bob@gw.test", "198.51.100.77", False, "allowed-ip", False),
    ("bob@gw.test", "203.0.113.5", False, "allowed-ip", False),  # both lists: allowed wins
    ("bob@gw.test", "203.0.113.9", True, "", False),
    ("bob@gw.test", "198.51.100.99", False, "gateway", True),
    ("bob@gw.test", None, False, "", True),  # unknown: never trusted, rules on
    ("carol@plain.test", "203.0.113.9", True, "", False),
    ("carol@plain.test", "198.51.100.99", False, "", True),
    ("carol@plain.test", None, False, "", True),
]


def _received(original: str | None) -> bytes:
    if original is None:
        return UNREADABLE.encode()
    return f"from h.example (h.example [{original}])\n\tby gw (Postfix) with ESMTP".encode()


def _milter(recipient: str, original: str | None) -> tuple[bool, str, bool]:
    view = compile_view(compile_settings(load_text(SETTINGS, "t").settings))
    plan = plan_message(
        view,
        MessageFacts(
            client_ip="192.0.2.25",
            sender="a@ext.example",
            recipients=[recipient],
            headers=[("Received", _received(original)), ("Subject", b"cheap pills")],
            body=b"hi\r\n",
        ),
    )
    removed = bool(plan.reject) or recipient in plan.delete_recipients
    trusted = dict(plan.add_headers).get("X-Postwarden-Trusted", "")
    return removed, trusted, bool(plan.spam_rules)


@pytest.mark.parametrize(("recipient", "original", "removed", "trusted", "rules"), ROWS)
def test_explain_via_gateway_agrees_with_the_milter(
    cli: Cli, recipient: str, original: str | None, removed: bool, trusted: str, rules: bool
) -> None:
    cli.settings.write_text(SETTINGS)
    argv = ["explain", "--via-gateway", "--sender", "a@ext.example", "--recipient", recipient]
    if original is not None:
        argv += ["--original-ip", original]
    explained = cli.ok(*argv, "--json").json()
    message = explained["message"]
    said = (explained["decision"] == "reject", message["trusted"], message["spam_rules"])
    assert said == (removed, trusted, rules), explained
    assert _milter(recipient, original) == (removed, trusted, rules)
    assert message["original_unknown"] is (original is None)


def test_explain_via_gateway_shows_the_rcpt_answer_and_the_milters(cli: Cli) -> None:
    cli.settings.write_text(SETTINGS)
    out = cli.ok(
        "explain",
        "--via-gateway",
        "--client-ip",
        "192.0.2.26",
        "--sender",
        "a@x.example",
        "--recipient",
        "bob@gw.test",
        "--original-ip",
        "203.0.113.9",
    ).out
    assert "gateway-skip-spam-filter" in out  # policyd's OK for the gateway at RCPT
    assert "recipient removed" in out and "203.0.113.0/24" in out
    refused = cli(
        "explain",
        "--via-gateway",
        "--client-ip",
        "198.51.100.1",
        "--sender",
        "a@x.example",
        "--recipient",
        "bob@gw.test",
    )
    assert refused.status == 1 and "not a gateway of gw.test" in refused.err
