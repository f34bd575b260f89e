"""`postwarden explain` gives the decision table (README "How a decision is made"), row by row."""

from __future__ import annotations

import pytest

from tests.unit.conftest import Cli

SETTINGS = """\
version: 1
primary_domain: example.com
trusted_networks: [192.0.2.0/28]
domains:
  example.com:
    allowed_ips:
      - 198.51.100.7
      - 203.0.113.5                  # also blocked below: allowed wins
      - 2001:db8:aa::/48
    blocked_ips:
      - 203.0.113.0/24
      - 198.51.100.50-198.51.100.60
      - 2001:db8:bad::/48
    gateway:
      enabled: true
      only_from_gateway: true
      ips: [192.0.2.200, 2001:db8:6a7e::/120]
    tls_policies:
      - {title: bank, target: incoming, partners: [bank.example, .secure.example]}
  sales.example.com:                 # no block: uses example.com's
  lab.example.com:                   # own block replaces example.com's whole
    blocked_ips: [198.51.100.0/24]
  other.example:                     # hosted, no block anywhere: the defaults
"""

# (case, client, sender, recipient, extra options, decision, action prefix, rule, settings from)
ROWS = [
    (
        "tls required, plaintext",
        "198.51.100.7",
        "a@bank.example",
        "bob@example.com",
        [],
        "reject",
        "530 5.7.0",
        "tls-required",
        "example.com",
    ),
    (
        "tls required, subdomain pattern",
        "198.51.100.9",
        "a@mx.secure.example",
        "bob@example.com",
        [],
        "reject",
        "530 5.7.0",
        "tls-required",
        "example.com",
    ),
    (
        "tls required, over tls",
        "198.51.100.9",
        "a@bank.example",
        "bob@example.com",
        ["--tls"],
        "reject",
        "554 5.7.1",
        "gateway-only",
        "example.com",
    ),
    (
        "allowed",
        "198.51.100.7",
        "a@x.example",
        "bob@example.com",
        [],
        "accept",
        "OK",
        "allowed-ip",
        "example.com",
    ),
    (
        "in both lists: received",
        "203.0.113.5",
        "a@x.example",
        "bob@example.com",
        [],
        "accept",
        "OK",
        "allowed-ip",
        "example.com",
    ),
    (
        "allowed ipv6 range",
        "2001:db8:aa:1::25",
        "a@x.example",
        "bob@example.com",
        [],
        "accept",
        "OK",
        "allowed-ip",
        "example.com",
    ),
    (
        "blocked cidr",
        "203.0.113.6",
        "a@x.example",
        "bob@example.com",
        [],
        "reject",
        "554 5.7.1",
        "blocked-ip",
        "example.com",
    ),
    (
        "blocked first-last range",
        "198.51.100.55",
        "a@x.example",
        "bob@example.com",
        [],
        "reject",
        "554 5.7.1",
        "blocked-ip",
        "example.com",
    ),
    (
        "just past the range",
        "198.51.100.61",
        "a@x.example",
        "bob@example.com",
        [],
        "reject",
        "554 5.7.1",
        "gateway-only",
        "example.com",
    ),
    (
        "blocked ipv6 range",
        "2001:db8:bad::1",
        "a@x.example",
        "bob@example.com",
        [],
        "reject",
        "554 5.7.1",
        "blocked-ip",
        "example.com",
    ),
    (
        "gateway only: not a gateway",
        "198.51.100.9",
        "a@x.example",
        "bob@example.com",
        [],
        "reject",
        "554 5.7.1",
        "gateway-only",
        "example.com",
    ),
    (
        "gateway only: the gateway",
        "192.0.2.200",
        "a@x.example",
        "bob@example.com",
        [],
        "accept",
        "DUNNO",
        "no-rule",
        "example.com",
    ),
    (
        "gateway only: ipv6 gateway",
        "2001:db8:6a7e::9",
        "a@x.example",
        "bob@example.com",
        [],
        "accept",
        "DUNNO",
        "no-rule",
        "example.com",
    ),
    (
        "subdomain uses parent",
        "203.0.113.6",
        "a@x.example",
        "bob@sales.example.com",
        [],
        "reject",
        "554 5.7.1",
        "blocked-ip",
        "example.com",
    ),
    (
        "subdomain block replaces parent: parent's block list gone",
        "203.0.113.6",
        "a@x.example",
        "bob@lab.example.com",
        [],
        "accept",
        "DUNNO",
        "no-rule",
        "lab.example.com",
    ),
    (
        "subdomain block replaces parent: own list",
        "198.51.100.7",
        "a@x.example",
        "bob@lab.example.com",
        [],
        "reject",
        "554 5.7.1",
        "blocked-ip",
        "lab.example.com",
    ),
    (
        "hosted without any block",
        "203.0.113.6",
        "a@x.example",
        "bob@other.example",
        [],
        "accept",
        "DUNNO",
        "no-rule",
        "",
    ),
    (
        "sasl client never judged",
        "203.0.113.6",
        "a@example.com",
        "bob@example.com",
        ["--sasl-user", "alice"],
        "accept",
        "DUNNO",
        "trusted-client",
        "example.com",
    ),
    (
        "trusted network never judged",
        "192.0.2.3",
        "a@bank.example",
        "bob@example.com",
        [],
        "accept",
        "DUNNO",
        "trusted-client",
        "example.com",
    ),
    (
        "not hosted: relay control decides",
        "203.0.113.6",
        "a@x.example",
        "bob@elsewhere.example",
        [],
        "accept",
        "DUNNO",
        "not-hosted",
        "",
    ),
    (
        "case and trailing dot",
        "203.0.113.6",
        "a@x.example",
        "Bob@Example.COM.",
        [],
        "reject",
        "554 5.7.1",
        "blocked-ip",
        "example.com",
    ),
]


@pytest.fixture
def configured(cli: Cli) -> Cli:
    cli.settings.write_text(SETTINGS)
    return cli


@pytest.mark.parametrize(
    ("client", "sender", "recipient", "extra", "decision", "action", "rule", "source"),
    [row[1:] for row in ROWS],
    ids=[row[0] for row in ROWS],
)
def test_decision_table(
    configured: Cli,
    client: str,
    sender: str,
    recipient: str,
    extra: list[str],
    decision: str,
    action: str,
    rule: str,
    source: str,
) -> None:
    result = configured.ok(
        "explain",
        "--json",
        "--client-ip",
        client,
        "--sender",
        sender,
        "--recipient",
        recipient,
        *extra,
    ).json()
    assert (result["decision"], result["rule"], result["settings_from"]) == (
        decision,
        rule,
        source,
    ), result["reason"]
    assert result["action"].startswith(action)


def test_both_lists_is_explained(configured: Cli) -> None:
    out = configured.ok(
        "explain",
        "--client-ip",
        "203.0.113.5",
        "--sender",
        "a@x.example",
        "--recipient",
        "bob@example.com",
    ).out
    assert "decision:  accept (OK)" in out
    assert "also in blocked_ips (203.0.113.0/24), the allowed list wins" in out


@pytest.mark.parametrize(
    ("sender", "recipient", "extra", "direction"),
    [
        ("a@example.com", "b@sales.example.com", ["--sasl-user", "a"], "internal"),
        ("a@example.com", "b@elsewhere.example", ["--sasl-user", "a"], "external-outbound"),
        ("a@example.com", "b@example.com", [], "external-inbound"),  # forged from outside
        ("a@x.example", "b@example.com", [], "external-inbound"),
        ("a@x.example", "b@elsewhere.example", [], "relay"),
    ],
)
def test_internal_and_external(
    configured: Cli, sender: str, recipient: str, extra: list[str], direction: str
) -> None:
    result = configured.ok(
        "explain",
        "--json",
        "--client-ip",
        "198.51.100.9",
        "--sender",
        sender,
        "--recipient",
        recipient,
        *extra,
    ).json()
    assert result["direction"] == direction


def test_explain_refuses_bad_input(configured: Cli) -> None:
    result = configured(
        "explain", "--client-ip", "999.1.1.1", "--sender", "", "--recipient", "b@example.com"
    )
    assert result.status == 1 and "'999.1.1.1' is not an IP address" in result.err


def test_internationalized_domains_match_in_both_forms(cli: Cli) -> None:
    cli.ok("init", "bücher.example")  # stored as its A-label
    cli.ok("block", "add", "203.0.113.0/24")
    assert cli.ok("domain", "list", "--json").json()[0]["domain"] == "xn--bcher-kva.example"
    for recipient in (
        "kunde@bücher.example",
        "kunde@xn--bcher-kva.example",
        "kunde@BÜCHER.example",
    ):
        result = cli.ok(
            "explain",
            "--json",
            "--client-ip",
            "203.0.113.9",
            "--sender",
            "a@x.example",
            "--recipient",
            recipient,
        ).json()
        assert (result["rule"], result["recipient_domain"]) == (
            "blocked-ip",
            "xn--bcher-kva.example",
        ), recipient
    tls = cli.ok("tls", "add", "--title", "t", "--target", "incoming", "straße.example")
    assert tls.status == 0
    partners = cli.ok("tls", "list", "--json").json()["policies"][0]["partners"]
    assert partners == ["xn--strae-oqa.example"]  # IDNA 2008: ß stays ß (not "ss")
