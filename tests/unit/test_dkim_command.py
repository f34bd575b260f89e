"""`postwarden dkim` in-process: create, import, show, verify (DNS replaced), delete.

The real DNS lookup and the file ownership as the service user are proven in
tests/integration/test_dkim_cli.py; here the check's outcome is chosen by the test.
"""

from __future__ import annotations

import re
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from postwarden.cli import dkim as dkim_command
from postwarden.dkim import keys, record
from postwarden.dkim.dnscheck import CheckResult, Outcome
from postwarden.dkim.receiver import ReceiverVerdict
from postwarden.milter import dkim_probe
from tests.unit.conftest import Cli


class FakeDns:
    """Stands in for check_record: the outcome per selector, and the calls made."""

    def __init__(self) -> None:
        self.outcomes: dict[str, Outcome] = {}
        self.calls: list[tuple[str, str, str | None]] = []

    def __call__(self, domain: str, selector: str, key: Any, **kwargs: Any) -> CheckResult:
        self.calls.append((domain, selector, kwargs.get("nameserver")))
        outcome = self.outcomes.get(selector, Outcome.MISSING)
        name = record.host_name(selector, domain)
        return CheckResult(outcome, f"{name}: {outcome.value} (fake)", name, "fake:53")


def _fake_receiver(message: bytes, **kwargs: Any) -> ReceiverVerdict:
    """A receiver that accepts any signature (the real one is tested against dnsmasq)."""
    tags = dict(re.findall(rb"\b([ds])=([^;\s]+)", message.split(b"\r\n\r\n")[0]))
    return ReceiverVerdict(True, tags[b"d"].decode(), tags[b"s"].decode(), "rsa-sha256", "ok")


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> FakeDns:
    fake = FakeDns()
    monkeypatch.setattr(dkim_command, "check_record", fake)
    monkeypatch.setattr(dkim_probe, "verify_message", _fake_receiver)
    return fake


@pytest.fixture
def cli_init(cli: Cli) -> Cli:
    cli.ok("init", "example.com")
    return cli


def _keys(cli: Cli, *argv: str) -> dict[str, dict[str, Any]]:
    return {k["selector"]: k for k in cli.ok("dkim", "show", "--json", *argv).json()["keys"]}


def test_create_shows_the_record(cli_init: Cli) -> None:
    result = cli_init.ok("dkim", "create")
    assert (
        "Created a 2048-bit RSA key for example.com, selector 'postwarden' (pending)" in result.out
    )
    assert "host:  postwarden._domainkey.example.com" in result.out
    data = cli_init.ok(
        "dkim", "create", "--selector", "ed", "--algorithm", "ed25519", "--json"
    ).json()
    assert (data["algorithm"], data["bits"], data["status"]) == ("ed25519", 256, "pending")
    assert data["txt"].startswith("v=DKIM1; k=ed25519; p=")
    assert data["zone_line"] == f'ed._domainkey.example.com. IN TXT ( "{data["txt"]}" )'
    path = Path(data["key_file"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert keys.algorithm_of(keys.read_key(path)) is keys.Algorithm.ED25519
    small = cli_init.ok("dkim", "create", "--selector", "small", "--bits", "1024", "--json").json()
    assert small["bits"] == 1024 and len(small["txt_strings"]) == 1


def test_default_selector_comes_from_the_settings(cli_init: Cli) -> None:
    cli_init.settings.write_text(
        "version: 1\nprimary_domain: example.com\n"
        "domains:\n  example.com:\n    dkim: {selector: mail2024}\n"
    )
    assert cli_init.ok("dkim", "create", "--json").json()["selector"] == "mail2024"


def test_verify_activates_and_rotates(cli_init: Cli, dns: FakeDns) -> None:
    cli_init.ok("dkim", "create", "--selector", "s1")
    failed = cli_init("dkim", "verify")
    assert failed.status == 1
    assert "not verified: missing (" in failed.err and "72 hours" in failed.err
    assert _keys(cli_init)["s1"]["status"] == "pending"
    assert _keys(cli_init)["s1"]["last_result"].startswith("missing:")

    dns.outcomes["s1"] = Outcome.OK
    done = cli_init.ok("dkim", "verify", "--nameserver", "127.0.0.1:5353")
    assert "example.com now signs with selector 's1'" in done.out
    assert dns.calls[-1] == ("example.com", "s1", "127.0.0.1:5353")

    created = cli_init.ok("dkim", "create", "--selector", "s2", "--json").json()
    assert created["active_selector"] == "s1"
    for outcome, reason in (
        (Outcome.DIFFERENT, "different key"),
        (Outcome.REVOKED, "revoked"),
        (Outcome.DNS_ERROR, "DNS error"),
    ):
        dns.outcomes["s2"] = outcome
        result = cli_init("dkim", "verify")  # the newest pending key: s2
        assert result.status == 1 and f"not verified: {reason} (" in result.err
        assert {s: k["status"] for s, k in _keys(cli_init).items()} == {
            "s1": "active",
            "s2": "pending",
        }
    dns.outcomes["s2"] = Outcome.OK
    data = cli_init.ok("dkim", "verify", "--json").json()
    assert (data["ok"], data["selector"], data["retired_selector"]) == (True, "s2", "s1")
    shown = cli_init.ok("dkim", "show", "--json").json()
    assert shown["signing_selector"] == "s2"
    assert {k["selector"]: k["status"] for k in shown["keys"]} == {"s1": "retired", "s2": "active"}
    assert "txt" not in _keys(cli_init)["s1"]  # retired keys need no record any more
    # With no pending key, verify re-checks the active one.
    cli_init.ok("dkim", "verify")
    assert dns.calls[-1][1] == "s2"


def test_show_text(cli_init: Cli, dns: FakeDns) -> None:
    assert "has no DKIM keys of its own" in cli_init.ok("dkim", "show").out
    cli_init.ok("dkim", "create")
    out = cli_init.ok("dkim", "show").out
    assert "example.com: UNSIGNED: no key of its own or of the primary domain" in out
    assert "SELECTOR" in out and "postwarden  rsa        2048  pending" in out
    dns.outcomes["postwarden"] = Outcome.OK
    cli_init.ok("dkim", "verify")
    assert "example.com: signed with its own key, selector 'postwarden'" in (
        cli_init.ok("dkim", "show").out
    )


def test_show_and_status_agree_on_the_primary_key_signing_for_a_subdomain(
    cli_init: Cli, dns: FakeDns
) -> None:
    """sales.example.com has no key of its own: the milter signs with example.com's."""
    cli_init.ok("domain", "add", "sales.example.com")
    cli_init.ok("dkim", "create")
    dns.outcomes["postwarden"] = Outcome.OK
    cli_init.ok("dkim", "verify")
    said = (
        "sales.example.com: signed with the primary domain example.com's key, selector"
        " 'postwarden': no key of its own signs"
    )
    assert said in cli_init.ok("dkim", "show", "--domain", "sales.example.com").out
    assert said.replace("sales", "  sales", 1) in cli_init("status").out
    shown = cli_init.ok("dkim", "show", "--domain", "sales.example.com", "--json").json()
    status = {d["domain"]: d for d in cli_init("status", "--json").json()["dkim"]}
    assert shown["signing"] == status["sales.example.com"]["signing"]
    assert shown["signing"]["signed_by"] == "example.com"
    text = cli_init.settings.read_text()
    assert "  sales.example.com: null\n" in text  # no block of its own: example.com's governs
    own = "  sales.example.com: {dkim: {enabled: false}}\n"
    cli_init.settings.write_text(text.replace("  sales.example.com: null\n", own))
    off = "sales.example.com: not signed: signing is off in the settings (dkim.enabled: false)"
    assert off in cli_init.ok("dkim", "show", "--domain", "sales.example.com").out
    assert off.replace("sales", "  sales", 1) in cli_init("status").out


def test_subdomain_keys_are_its_own(cli_init: Cli, dns: FakeDns) -> None:
    cli_init.ok("domain", "add", "sub.example.com")
    cli_init.ok("dkim", "create", "--domain", "sub.example.com")
    assert _keys(cli_init) == {}
    assert set(_keys(cli_init, "--domain", "sub.example.com")) == {"postwarden"}
    cli_init.ok("dkim", "create")  # the same selector for another domain is fine


def test_import(cli_init: Cli, tmp_path: Path) -> None:
    old = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    path = tmp_path / "mail.private"
    path.write_bytes(
        old.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    data = cli_init.ok(
        "dkim", "import", "--selector", "mail", "--key-file", str(path), "--json"
    ).json()
    assert (data["status"], data["bits"], data["txt"]) == (
        "pending",
        1024,
        record.format_record(old),
    )
    assert (
        "Imported a 1024-bit RSA key"
        in cli_init.ok("dkim", "import", "--selector", "again", "--key-file", str(path)).out
    )


def test_delete(cli_init: Cli, dns: FakeDns) -> None:
    created = cli_init.ok("dkim", "create", "--json").json()
    dns.outcomes["postwarden"] = Outcome.OK
    cli_init.ok("dkim", "verify")
    refused = cli_init("dkim", "delete", "--selector", "postwarden")
    assert refused.status == 1 and "is the active key of example.com" in refused.err
    cli_init.ok("dkim", "create", "--selector", "next")
    cli_init.ok("dkim", "delete", "--selector", "next")
    assert set(_keys(cli_init)) == {"postwarden"}
    assert Path(created["key_file"]).exists()
    assert not Path(created["key_file"]).with_name("next.pem").exists()
    cli_init.ok("dkim", "create", "--selector", "next")  # the selector is free again


def test_bad_input_changes_nothing(cli_init: Cli, dns: FakeDns, tmp_path: Path) -> None:
    cli_init.ok("dkim", "create", "--bits", "1024")
    junk = tmp_path / "junk"
    junk.write_text("junk")
    before = _keys(cli_init)
    files = sorted(cli_init.state_dir.rglob("*.pem"))
    cases = [
        (["create"], "selector 'postwarden' (the dkim.selector setting) already"),
        (["create", "--selector", "a_b"], "--selector: 'a_b' is not a selector"),
        (["create", "--selector", "x", "--bits", "4096"], "--bits: '4096' is not 1024 or 2048"),
        (["create", "--selector", "x", "--algorithm", "dsa"], "'dsa' is not a DKIM key"),
        (["create", "--domain", "other.example"], "other.example is not a hosted domain"),
        (["verify", "--selector", "nope"], "no DKIM key with selector 'nope'"),
        (["verify", "--nameserver", "[::1"], "is not HOST[:PORT]"),
        (["verify", "--timeout", "0"], "--timeout"),
        (["import", "--selector", "y", "--key-file", str(junk)], f"{junk}: not a private key"),
        (["import", "--selector", "postwarden", "--key-file", str(junk)], "not a private key"),
        (["delete", "--selector", "nope"], "no DKIM key with selector 'nope'"),
    ]
    for argv, message in cases:
        result = cli_init("dkim", *argv)
        assert result.status == 1, (argv, result.err)
        assert message in result.err, (argv, result.err)
        assert _keys(cli_init) == before, argv
        assert sorted(cli_init.state_dir.rglob("*.pem")) == files, argv
    assert dns.calls == []


def test_verify_without_keys(cli_init: Cli, dns: FakeDns) -> None:
    result = cli_init("dkim", "verify")
    assert result.status == 1 and "has no pending or active DKIM key" in result.err
