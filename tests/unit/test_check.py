"""`postwarden check`: every kind of bad file is refused with FILE:LINE errors.

One case per limit and per form of error; each names the line the problem is on.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.conftest import Cli

EXAMPLE = Path(__file__).resolve().parents[2] / "postfix-conf" / "settings.example.yaml"

HEAD = "version: 1\nprimary_domain: example.com\n"


def _domain(body: str) -> str:
    """A file whose example.com block is *body* (indented by the caller's 4 spaces)."""
    return HEAD + "domains:\n  example.com:\n" + body


def _entries(key: str, count: int, *, indent: str = "    ") -> str:
    lines = [f"{indent}{key}:"]
    lines += [f"{indent}  - 10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(count)]
    return "\n".join(lines) + "\n"


# (case, file text, line of the error, text the message must contain)
BAD_FILES = [
    ("not yaml", "version: 1\nprimary_domain: [\n", 3, "not valid YAML"),
    ("empty", "", 1, "the file is empty"),
    ("not a mapping", "- 1\n", 1, "expected a mapping"),
    ("version", "version: 2\nprimary_domain: example.com\n", 1, "unsupported version 2"),
    ("missing primary", "version: 1\n", 1, "primary_domain: required setting is missing"),
    ("unknown key", HEAD + "colour: red\n", 3, "colour: unknown setting"),
    (
        "unknown nested key",
        _domain("    gateway:\n      colour: red\n"),
        6,
        "gateway.colour: unknown setting",
    ),
    ("wrong type", _domain("    gateway:\n      enabled: maybe\n"), 6, "expected true or false"),
    ("bad domain", HEAD + "domains:\n  not_a_domain:\n", 4, "'not_a_domain' is not a valid domain"),
    ("duplicate key", HEAD + "domains:\n  a.example:\n  a.example:\n", 5, "given twice"),
    ("bad ip", _domain("    blocked_ips:\n      - 192.0.2.300\n"), 6, "'192.0.2.300' is not"),
    ("host bits", _domain("    blocked_ips:\n      - 192.0.2.1/24\n"), 6, "host bits set"),
    (
        "bad range",
        _domain("    allowed_ips:\n      - 192.0.2.9-192.0.2.1\n"),
        6,
        "range ends before it starts",
    ),
    ("bad ipv6", _domain("    allowed_ips:\n      - 2001:db8::g\n"), 6, "is not"),
    ("everything", _domain("    blocked_ips:\n      - 0.0.0.0/0\n"), 6, "covers every address"),
    ("everything v6", _domain("    allowed_ips:\n      - ::/0\n"), 6, "covers every address"),
    (
        "allowed limit",
        _domain(_entries("allowed_ips", 10_001)),
        5,
        "10,001 entries; at most 10,000",
    ),
    (
        "blocked limit",
        _domain(_entries("blocked_ips", 10_001)),
        5,
        "10,001 entries; at most 10,000",
    ),
    (
        "gateway limit",
        _domain("    gateway:\n" + _entries("ips", 51, indent="      ")),
        6,
        "51 entries; at most 50",
    ),
    ("gateway width v4", _domain("    gateway:\n      ips: [10.0.0.0/19]\n"), 6, "wider than /20"),
    (
        "gateway width v6",
        _domain("    gateway:\n      ips: ['2001:db8::/115']\n"),
        6,
        "wider than /116",
    ),
    (
        "tls limit",
        _domain(
            "    tls_policies:\n"
            + "".join(f"      - {{title: t{i}, partners: [p{i}.example]}}\n" for i in range(31))
        ),
        5,
        "31 TLS policies; at most 30",
    ),
    (
        "tls titles",
        _domain(
            "    tls_policies:\n      - {title: t, partners: [a.example]}\n"
            "      - {title: t, partners: [b.example]}\n"
        ),
        7,
        "title 't' is used twice",
    ),
    (
        "tls partners limit",
        _domain(
            "    tls_policies:\n      - title: t\n        partners:\n"
            + "".join(f"          - p{i}.example\n" for i in range(101))
        ),
        7,
        "101 partner domains; at most 100",
    ),
    (
        "tls partners empty",
        _domain("    tls_policies:\n      - {title: t, partners: []}\n"),
        6,
        "name at least one partner",
    ),
    (
        "tls incoming options",
        _domain(
            "    tls_policies:\n      - {title: t, target: incoming, trusted_ca: true,"
            " partners: [a.example]}\n"
        ),
        6,
        "apply to outgoing policies only",
    ),
    ("selector", _domain("    dkim:\n      selector: -bad\n"), 6, "is not a selector"),
    ("selector length", _domain(f"    dkim:\n      selector: {'a' * 64}\n"), 6, "longer than 63"),
    (
        "backreference",
        _domain("    spam_rules:\n      - {name: r, field: subject, pattern: '(a)\\1'}\n"),
        6,
        "backreferences are not supported",
    ),
    (
        "lookahead",
        _domain("    spam_rules:\n      - {name: r, field: body, pattern: 'x(?=y)'}\n"),
        6,
        "lookahead and lookbehind are not supported",
    ),
    (
        "bad regex",
        _domain("    spam_rules:\n      - {name: r, field: body, pattern: '['}\n"),
        6,
        "missing ]",
    ),
    (
        "spam field",
        _domain("    spam_rules:\n      - {name: r, field: head, pattern: x}\n"),
        6,
        "'head' is not one of",
    ),
    (
        "rule names",
        _domain("    spam_rules:\n      - {name: r, pattern: x}\n      - {name: r, pattern: y}\n"),
        7,
        "name 'r' is used twice",
    ),
    (
        "missing route",
        _domain("    inbound_routing:\n      - {name: r, route: archive}\n"),
        6,
        "route 'archive' does not exist",
    ),
    (
        "gateway route",
        _domain("    gateway: {route: nowhere}\n"),
        5,
        "route 'nowhere' does not exist",
    ),
    (
        "port",
        HEAD + "routes:\n  r:\n    host: mx.example.net\n    port: 0\n",
        6,
        "0 is out of range (1 to 65535)",
    ),
    ("route host", HEAD + "routes:\n  r:\n    host: 'not a host'\n", 5, "is not a host name"),
    ("route required", HEAD + "routes:\n  r: {port: 25}\n", 4, "host: required setting"),
    (
        "gateway needs ips",
        _domain("    gateway: {enabled: true, only_from_gateway: true}\n"),
        5,
        "no gateway IPs are listed",
    ),
]


@pytest.mark.parametrize(
    ("text", "line", "message"), [case[1:] for case in BAD_FILES], ids=[c[0] for c in BAD_FILES]
)
def test_bad_file_is_refused_with_file_and_line(
    cli: Cli, tmp_path: Path, text: str, line: int, message: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    result = cli("check", str(path))
    assert result.status == 1
    located = [x for x in result.out.splitlines() if x.startswith(f"{path}:{line}: ")]
    assert any(message in x for x in located), result.out


def test_every_problem_is_reported_not_just_the_first(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        _domain("    blocked_ips: [192.0.2.300, 10.0.0.1/8]\n    colour: red\n")
        + "routes:\n  r: {host: mx.example.net, port: 99999}\n"
    )
    result = cli("check", "--json", str(path))
    assert result.status == 1
    errors = result.json()["errors"]
    assert [e["setting"] for e in errors] == [
        "domains.example.com.blocked_ips[0]",
        "domains.example.com.blocked_ips[1]",
        "domains.example.com.colour",
        "routes.r.port",
    ]


def test_warnings_do_not_fail_the_file(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "warn.yaml"
    path.write_text(
        _domain(
            "    allowed_ips: [10.0.0.0/16, 10.0.1.0/24, 10.0.1.0/24, '2001:db8::/32']\n"
            "    blocked_ips: [10.0.0.0/16]\n"
        )
    )
    result = cli("check", str(path))
    assert result.status == 0, result.out
    out = result.out
    assert f"{path}:5: warning: domains.example.com.allowed_ips[0]: '10.0.0.0/16' is wider" in out
    assert "allowed_ips[1]: 10.0.1.0/24 is inside 10.0.0.0/16" in out
    assert "allowed_ips[2]: 10.0.1.0/24 is listed twice" in out
    assert "'2001:db8::/32' is wider than /48" in out
    assert "blocked_ips" not in out  # in both lists is valid, and /16 blocked is no warning


def test_the_example_settings_are_valid(cli: Cli) -> None:
    result = cli("check", str(EXAMPLE))
    assert result.status == 0, result.out
    assert result.out.strip().endswith("valid (0 warning(s))")


def test_check_defaults_to_the_settings_file(cli: Cli) -> None:
    cli.ok("init", "example.com")
    assert cli("check").status == 0
    cli.settings.write_text("version: 1\n")
    assert cli("check").status == 1


def test_outbound_route_bypassing_tls_policies_is_a_warning(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "route.yaml"
    path.write_text(
        _domain(
            "    tls_policies:\n      - {title: t, partners: [partner.example]}\n"
            "    outbound_routing:\n      - {name: dlp, route: dlp, action: change-route}\n"
        )
        + "routes:\n  dlp: {host: dlp.example.net}\n"
    )
    result = cli("check", str(path))
    assert result.status == 0
    assert "outbound_routing[0]: mail sent through route 'dlp' is not subject" in result.out
