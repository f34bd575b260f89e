"""`postwarden dkim` as an administrator uses it: root CLI, real DNS server, service-user files.

The CLI runs as root against an installation whose state directory belongs to the service
user (tests/integration/daemons.py); dnsmasq on loopback (tests/integration/dns.py) is the
domain's authoritative DNS server. Each failing check must name its reason and change
nothing; rotation must keep the old key signing until the new one verifies.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dkim
import dns.message
import dns.query
import dns.rcode
import dns.resolver
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from postwarden.dkim import keys, record
from postwarden.dkim.dnscheck import Outcome, check_record
from postwarden.dkim.store import ChangeProbe, signing_keys
from postwarden.milter.dkim_sign import sign
from postwarden.state.db import StateDB
from tests.harness import ServiceUser, spawn_as_service_user
from tests.harness.fixtures import make_traversable_dir
from tests.integration.daemons import PYTHON, Installation
from tests.integration.dns import DnsServer, failing_dns_server, running_dns_server

DOMAIN = "hosted.test"


@pytest.fixture
def inst(service_user: ServiceUser) -> Iterator[Installation]:
    base = make_traversable_dir("pw-dkim-")
    try:
        yield Installation(base, service_user, primary=DOMAIN)
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def dns_server() -> Iterator[DnsServer]:
    with running_dns_server((DOMAIN,)) as server:
        yield server


def _show(inst: Installation, domain: str = DOMAIN) -> dict[str, dict[str, Any]]:
    data = inst.cli_json("dkim", "show", "--domain", domain)
    return {k["selector"]: k for k in data["keys"]}


def _create(inst: Installation, *argv: str) -> dict[str, Any]:
    return inst.cli_json("dkim", "create", *argv)


def _publish(server: DnsServer, created: dict[str, Any]) -> None:
    server.set_txt(created["host"], created["txt_strings"])


def _verify(inst: Installation, server: DnsServer, *argv: str) -> subprocess.CompletedProcess[str]:
    return inst.cli("dkim", "verify", "--nameserver", server.address, *argv, check=False)


def _state_snapshot(inst: Installation) -> tuple[bytes, dict[str, bytes]]:
    """The settings file and every key file, to prove that nothing changed."""
    files = {str(p): p.read_bytes() for p in sorted((inst.state_dir / "dkim").rglob("*.pem"))}
    return inst.settings.read_bytes(), files


def test_key_files_belong_to_the_service_user(inst: Installation, service_user: ServiceUser):
    created = _create(inst)
    path = Path(created["key_file"])
    assert path == inst.state_dir / "dkim" / DOMAIN / "postwarden.pem"
    for item, mode in ((path, 0o600), (path.parent, 0o700), (path.parent.parent, 0o700)):
        st = item.stat()
        assert (st.st_uid, st.st_gid) == (service_user.uid, service_user.gid), item
        assert stat.S_IMODE(st.st_mode) == mode, (item, oct(st.st_mode))
    for name in os.listdir(inst.state_dir):  # state.db and its -wal/-shm too
        assert (inst.state_dir / name).stat().st_uid == service_user.uid, name
    assert not list(path.parent.glob(".new-*")), "temporary file left behind"
    # The daemon, as the service user, can read it; the private key is never printed.
    done = subprocess.run(
        [PYTHON, "-c", "import sys; open(sys.argv[1], 'rb').read()", str(path)],
        user=service_user.uid,
        group=service_user.gid,
        extra_groups=[],
        cwd="/",
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    pem = path.read_text()
    assert "PRIVATE KEY" in pem
    body = "".join(pem.splitlines()[1:-1])
    assert body[:40] not in json.dumps(created)
    assert body[:40] not in inst.cli("dkim", "show").stdout


def test_verify_publishes_and_activates(inst: Installation, dns_server: DnsServer) -> None:
    created = _create(inst)
    assert created["status"] == "pending"
    assert all(len(s.encode()) <= 255 for s in created["txt_strings"])
    assert len(created["txt_strings"]) == 2  # a 2048-bit key needs two strings
    _publish(dns_server, created)
    done = _verify(inst, dns_server)
    assert done.returncode == 0, done.stderr
    assert "now signs with selector 'postwarden'" in done.stdout
    key = _show(inst)["postwarden"]
    assert key["status"] == "active"
    assert key["verified"] is not None
    assert key["last_result"].startswith("ok:")
    with StateDB.open(inst.state_dir) as db:
        [active] = signing_keys(db, inst.state_dir)
    assert (active.domain, active.selector, active.path) == (
        DOMAIN,
        "postwarden",
        Path(created["key_file"]),
    )


@pytest.mark.parametrize(
    ("case", "reason", "hint"),
    [
        ("missing", "missing", True),
        ("different", "different key", True),
        ("revoked", "revoked", False),
        ("malformed", "malformed record", False),
    ],
)
def test_failed_checks_name_the_reason_and_change_nothing(
    inst: Installation, dns_server: DnsServer, case: str, reason: str, hint: bool
) -> None:
    """The 72-hour propagation hint only where waiting may help."""
    created = _create(inst)
    other = record.format_record(keys.generate(keys.Algorithm.RSA, 1024))
    if case == "different":
        dns_server.set_txt(created["host"], record.split_strings(other))
    elif case == "revoked":
        dns_server.set_txt(created["host"], ["v=DKIM1; k=rsa; p="])
    elif case == "malformed":
        dns_server.set_txt(created["host"], ["v=DKIM1; k=rsa; p=not base64!"])
    before = _state_snapshot(inst)
    done = _verify(inst, dns_server)
    assert done.returncode == 1
    assert f"not verified: {reason} (" in done.stderr, done.stderr
    assert ("72 hours" in done.stderr) is hint, done.stderr
    assert _state_snapshot(inst) == before
    key = _show(inst)["postwarden"]
    assert (key["status"], key["verified"]) == ("pending", None)
    assert key["last_result"].startswith(f"{Outcome(case).value}:")
    assert key["last_check"] is not None


def test_json_failure_report(inst: Installation, dns_server: DnsServer) -> None:
    _create(inst)
    done = inst.cli("dkim", "verify", "--nameserver", dns_server.address, "--json", check=False)
    assert done.returncode == 1
    data = json.loads(done.stdout)
    assert (data["ok"], data["result"], data["reason"], data["status"]) == (
        False,
        "missing",
        "missing",
        "pending",
    )
    assert data["detail"] == "postwarden._domainkey.hosted.test does not exist (NXDOMAIN)"


def test_dns_errors_are_named_in_words_without_the_propagation_hint(
    inst: Installation, dns_server: DnsServer
) -> None:
    inst.cli("domain", "add", "elsewhere.test")
    _create(inst, "--domain", "elsewhere.test")
    refused = _verify(inst, dns_server, "--domain", "elsewhere.test")
    assert refused.returncode == 1
    assert "not verified: DNS error (" in refused.stderr
    assert "answered REFUSED (the server does not answer for this name" in refused.stderr
    with failing_dns_server() as failing:
        servfail = inst.cli(
            "dkim", "verify", "--domain", "elsewhere.test", "--nameserver", failing, check=False
        )
    assert servfail.returncode == 1
    assert f"{failing} answered SERVFAIL (the server failed to answer" in servfail.stderr
    dns_server.stop()  # nothing answers: a timeout
    silent = _verify(inst, dns_server, "--domain", "elsewhere.test", "--timeout", "0.5")
    assert silent.returncode == 1
    assert "not verified: DNS error (" in silent.stderr and "timed out" in silent.stderr
    for done in (refused, servfail, silent):
        assert "72 hours" not in done.stderr and "Traceback" not in done.stderr
    assert _show(inst, "elsewhere.test")["postwarden"]["status"] == "pending"


def test_without_a_resolver_the_check_says_so(inst: Installation) -> None:
    """No name server in /etc/resolv.conf (here: an empty one in a private mount namespace)."""
    _create(inst)
    done = subprocess.run(
        [
            *("unshare", "--mount", "--propagation", "private", "sh", "-c"),
            *('mount --bind /dev/null /etc/resolv.conf && exec "$@"', "sh", PYTHON, "-m"),
            *("postwarden.cli", "--settings", str(inst.settings)),
            *("--state-dir", str(inst.state_dir), "dkim", "verify"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "no DNS resolver is configured" in done.stderr and "--nameserver" in done.stderr
    assert "72 hours" not in done.stderr and "SOA" not in done.stderr


def test_a_value_published_with_literal_quotes_is_malformed_not_missing(
    inst: Installation, dns_server: DnsServer
) -> None:
    """Pasted with its quotes into a DNS host's form: receivers read the quotes as data."""
    created = _create(inst)
    pasted = record.format_zone_strings(created["txt"])  # '"v=DKIM1; k=rsa; p=..." "..."'
    dns_server.set_txt(created["host"], record.split_strings(pasted))  # split by the DNS host
    done = _verify(inst, dns_server)
    assert done.returncode == 1
    assert "not verified: malformed record (" in done.stderr, done.stderr
    assert "our key, but literal quote characters" in done.stderr
    assert "72 hours" not in done.stderr
    assert _show(inst)["postwarden"]["status"] == "pending"


def test_rotation_keeps_the_old_key_until_the_new_one_verifies(
    inst: Installation, dns_server: DnsServer
) -> None:
    first = _create(inst, "--selector", "s1")
    _publish(dns_server, first)
    assert _verify(inst, dns_server).returncode == 0
    with StateDB.open(inst.state_dir) as db:
        probe = ChangeProbe(db, inst.state_dir)
        assert [k.selector for k in probe.current()] == ["s1"]

        second = _create(inst, "--selector", "s2", "--algorithm", "ed25519")
        assert second["active_selector"] == "s1"
        assert (
            "keeps signing with selector 's1'"
            in inst.cli("dkim", "create", "--selector", "s3").stdout
        )
        assert not probe.changed()  # new keys are pending: signing is unchanged
        assert {s: k["status"] for s, k in _show(inst).items()} == {
            "s1": "active",
            "s2": "pending",
            "s3": "pending",
        }
        # Verify picks the newest pending key (s3); it is not published: nothing changes.
        failed = _verify(inst, dns_server)
        assert failed.returncode == 1 and "selector 's3'" in failed.stderr
        assert not probe.changed()

        _publish(dns_server, second)
        done = _verify(inst, dns_server, "--selector", "s2")
        assert done.returncode == 0, done.stderr
        assert "Selector 's1' is retired" in done.stdout
        assert probe.changed()
        assert [(k.selector, k.algorithm.value) for k in probe.current()] == [("s2", "ed25519")]
        assert not probe.changed()
    assert {s: k["status"] for s, k in _show(inst).items()} == {
        "s1": "retired",
        "s2": "active",
        "s3": "pending",
    }
    # Retired keys are kept until deleted; the active one cannot be.
    assert Path(first["key_file"]).exists()
    refused = inst.cli("dkim", "delete", "--selector", "s2", check=False)
    assert refused.returncode == 1 and "active key" in refused.stderr
    inst.cli("dkim", "delete", "--selector", "s1")
    assert not Path(first["key_file"]).exists()
    assert set(_show(inst)) == {"s2", "s3"}


def test_import_opendkim_and_dkimpy_keys(
    inst: Installation, dns_server: DnsServer, service_user: ServiceUser, tmp_path: Path
) -> None:
    old_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    opendkim = tmp_path / "mail.private"  # as opendkim-genkey writes it: PKCS#1, 0600, root's
    opendkim.write_bytes(
        old_rsa.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    opendkim.chmod(0o600)
    assert opendkim.read_text().startswith("-----BEGIN RSA PRIVATE KEY-----")
    imported = inst.cli_json("dkim", "import", "--selector", "mail", "--key-file", str(opendkim))
    assert (imported["status"], imported["algorithm"], imported["bits"]) == ("pending", "rsa", 2048)
    assert imported["txt"] == record.format_record(old_rsa)
    stored = Path(imported["key_file"])
    assert stored.stat().st_uid == service_user.uid
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert stored.read_text().startswith("-----BEGIN PRIVATE KEY-----")  # PKCS#8 now

    old_ed = ed25519.Ed25519PrivateKey.generate()
    seed = old_ed.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    dkimpy_file = tmp_path / "ed.key"  # dknewkey --ktype ed25519
    dkimpy_file.write_bytes(base64.b64encode(seed) + b"\n")
    ed = inst.cli_json(
        "dkim",
        "import",
        "--selector",
        "ed",
        "--key-file",
        str(dkimpy_file),
        "--algorithm",
        "ed25519",
    )
    assert ed["txt"] == record.format_record(old_ed)

    # Imported keys sign only once verified.
    _publish(dns_server, imported)
    assert _verify(inst, dns_server, "--selector", "mail").returncode == 0
    assert _show(inst)["mail"]["status"] == "active"

    bad = inst.cli(
        "dkim",
        "import",
        "--selector",
        "x",
        "--key-file",
        str(dkimpy_file),
        "--algorithm",
        "rsa",
        check=False,
    )
    assert bad.returncode == 1 and "the key is ed25519, not rsa" in bad.stderr
    assert "x" not in _show(inst)


def test_authoritative_lookup(inst: Installation, dns_server: DnsServer) -> None:
    """Without --nameserver: zone, NS, address, then a non-recursive query to that server."""
    created = _create(inst)
    key = keys.read_key(Path(created["key_file"]))
    resolver = dns_server.resolver()
    missing = check_record(DOMAIN, "postwarden", key, resolver=resolver, port=dns_server.port)
    assert (missing.outcome, missing.server) == (Outcome.MISSING, dns_server.address)
    _publish(dns_server, created)
    found = check_record(DOMAIN, "postwarden", key, resolver=resolver, port=dns_server.port)
    assert found.outcome is Outcome.OK, found
    assert found.records == (created["txt"],)
    assert "auth[TXT] postwarden._domainkey.hosted.test" in dns_server.log_text()


def test_a_signature_made_with_the_stored_key_verifies_against_dns(
    inst: Installation, dns_server: DnsServer
) -> None:
    for selector, algorithm in (("r", "rsa"), ("e", "ed25519")):
        created = _create(inst, "--selector", selector, "--algorithm", algorithm)
        _publish(dns_server, created)
        key = keys.read_key(Path(created["key_file"]), trusted=True)
        headers = [("From", b" Ren\xc3\xa9e <r@hosted.test>"), ("Subject", b" test")]
        body = b"Hello\r\n"
        value = sign(headers, body, domain=DOMAIN, selector=selector, key=key)
        message = (
            b"DKIM-Signature: "
            + value.replace("\n", "\r\n").encode()
            + b"\r\n"
            + b"".join(n.encode() + b":" + v + b"\r\n" for n, v in headers)
            + b"\r\n"
            + body
        )

        def txt_from_dns(name: bytes, timeout: float = 5) -> bytes:
            query = dns.message.make_query(name.decode(), "TXT")
            answer = dns.query.udp(query, "127.0.0.1", port=dns_server.port, timeout=3)
            return b"".join(answer.answer[0][0].strings)

        assert dkim.verify(message, dnsfunc=txt_from_dns), algorithm


def test_bad_input_changes_nothing(inst: Installation) -> None:
    _create(inst)
    before = _state_snapshot(inst)
    cases = [
        (["create"], "selector 'postwarden' (the dkim.selector setting) already"),
        (["create", "--selector=-bad"], "'-bad' is not a selector"),
        (["create", "--selector", "x", "--bits", "4096"], "'4096' is not 1024 or 2048"),
        (["create", "--selector", "x", "--algorithm", "dsa"], "'dsa' is not a DKIM key algorithm"),
        (["create", "--selector", "x", "--algorithm", "ed25519", "--bits", "2048"], "--bits"),
        (["create", "--domain", "nothosted.test"], "nothosted.test is not a hosted domain"),
        (["verify", "--selector", "nope"], "no DKIM key with selector 'nope'"),
        (["verify", "--nameserver", "127.0.0.1:99999"], "'99999' is not a port number"),
        (["import", "--selector", "y", "--key-file", "/nonexistent/k"], "/nonexistent/k"),
        (["import", "--selector", "y", "--key-file", str(inst.settings)], "not a private key"),
        (["delete", "--selector", "nope"], "no DKIM key with selector 'nope'"),
    ]
    for argv, message in cases:
        done = inst.cli("dkim", *argv, check=False)
        assert done.returncode == 1, (argv, done.stderr)
        assert message in done.stderr, (argv, done.stderr)
        assert _state_snapshot(inst) == before, argv
    assert set(_show(inst)) == {"postwarden"}


def test_signing_key_is_readable_by_a_service_user_process(
    inst: Installation, service_user: ServiceUser, dns_server: DnsServer
) -> None:
    """What the milter will do at start: list the active keys and load them, as itself."""
    created = _create(inst)
    _publish(dns_server, created)
    assert _verify(inst, dns_server).returncode == 0
    script = (
        "import sys; from pathlib import Path\n"
        "from postwarden.state.db import StateDB\n"
        "from postwarden.dkim.store import signing_keys\n"
        "from postwarden.dkim.keys import read_key\n"
        "state = Path(sys.argv[1])\n"
        "with StateDB.open(state) as db:\n"
        "    for k in signing_keys(db, state):\n"
        "        read_key(k.path, trusted=True)\n"
        "        print(k.domain, k.selector, k.algorithm.value)\n"
    )
    proc = spawn_as_service_user(
        [PYTHON, "-c", script, str(inst.state_dir)],
        user=service_user,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.decode().split() == [DOMAIN, "postwarden", "rsa"]


@pytest.mark.parametrize(
    ("rcode", "words"),
    [
        (dns.rcode.NXDOMAIN, "the domain does not exist in DNS (NXDOMAIN up to the root)"),
        (dns.rcode.SERVFAIL, "answered SERVFAIL (the server failed to answer"),
    ],
)
def test_finding_the_authoritative_servers_fails_in_words(
    rcode: dns.rcode.Rcode, words: str
) -> None:
    """The resolver that finds the domain's own servers says NXDOMAIN or SERVFAIL to all."""
    key = keys.generate(keys.Algorithm.ED25519, None)
    with failing_dns_server(rcode) as failing:
        host, _, port = failing.partition(":")
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers, resolver.port = [host], int(port)
        result = check_record("nowhere.test", "sel", key, resolver=resolver, timeout=1)
    assert result.outcome is Outcome.DNS_ERROR
    assert result.detail.startswith("cannot find the name servers of sel._domainkey.nowhere.test")
    assert words in result.detail, result.detail
    assert "SOA RR" not in result.detail and not result.outcome.may_propagate
