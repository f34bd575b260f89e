"""DKIM private keys: generation, the formats we read, and the files we write."""

from __future__ import annotations

import base64
import os
import random
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from postwarden.dkim import keys
from postwarden.dkim.keys import Algorithm, BadKey, BadSelector, KeyFileExists

RSA = rsa.generate_private_key(public_exponent=65537, key_size=1024)
ED = ed25519.Ed25519PrivateKey.generate()


def _pem(key: object, fmt: serialization.PrivateFormat, password: bytes | None = None) -> bytes:
    encryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, fmt, encryption)  # type: ignore[attr-defined]


def _small_rsa(bits: int = 768) -> rsa.RSAPrivateKey:
    """An RSA key below cryptography's generation minimum (built from primes of our own)."""
    rng = random.Random(bits)

    def prime(size: int) -> int:
        while True:
            n = rng.getrandbits(size) | (1 << (size - 1)) | 1
            if all(pow(a, n - 1, n) == 1 for a in (2, 3, 5, 7, 11, 13, 17, 19, 23)):
                return n

    e = 65537
    while True:
        p, q = prime(bits // 2), prime(bits // 2)
        phi = (p - 1) * (q - 1)
        if p != q and phi % e:
            break
    d = pow(e, -1, phi)
    numbers = rsa.RSAPrivateNumbers(
        p, q, d, d % (p - 1), d % (q - 1), pow(q, -1, p), rsa.RSAPublicNumbers(e, p * q)
    )
    return numbers.private_key(unsafe_skip_rsa_key_validation=True)


def _same(a: object, b: object) -> bool:
    raw = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return a.public_key().public_bytes(*raw) == b.public_key().public_bytes(*raw)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("algorithm", "bits", "want"),
    [(Algorithm.RSA, None, 2048), (Algorithm.RSA, 1024, 1024), (Algorithm.ED25519, None, 256)],
)
def test_generate(algorithm: Algorithm, bits: int | None, want: int) -> None:
    key = keys.generate(algorithm, bits)
    assert keys.algorithm_of(key) is algorithm
    assert keys.bits_of(key) == want


@pytest.mark.parametrize(
    ("algorithm", "bits", "message"),
    [
        (Algorithm.RSA, 4096, "4096 is not a key size we generate"),
        (Algorithm.RSA, 512, "512 is not"),
        (Algorithm.ED25519, 2048, "no choice of size"),
    ],
)
def test_generate_refuses(algorithm: Algorithm, bits: int, message: str) -> None:
    with pytest.raises(BadKey, match=message):
        keys.generate(algorithm, bits)


def test_algorithm_names() -> None:
    assert Algorithm.from_text(" RSA ") is Algorithm.RSA
    assert Algorithm.ED25519.signature_name == "ed25519-sha256"
    with pytest.raises(BadKey, match="'dsa' is not a DKIM key algorithm"):
        Algorithm.from_text("dsa")


@pytest.mark.parametrize(
    "data",
    [
        _pem(RSA, serialization.PrivateFormat.PKCS8),
        _pem(RSA, serialization.PrivateFormat.TraditionalOpenSSL),  # OpenDKIM's *.private
    ],
    ids=["pkcs8", "pkcs1"],
)
@pytest.mark.parametrize("trusted", [False, True])
def test_parse_rsa(data: bytes, trusted: bool) -> None:
    key = keys.parse_private_key(data, trusted=trusted)
    assert _same(key, RSA)


def test_parse_ed25519_pkcs8_and_dkimpy_seed() -> None:
    assert _same(keys.parse_private_key(_pem(ED, serialization.PrivateFormat.PKCS8)), ED)
    seed = ED.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    for text in (base64.b64encode(seed), base64.b64encode(seed) + b"\n"):
        key = keys.parse_private_key(text, algorithm=Algorithm.ED25519)
        assert _same(key, ED)


def test_format_is_pkcs8_and_round_trips() -> None:
    for key in (RSA, ED):
        pem = keys.format_private_key(key)
        assert pem.startswith(b"-----BEGIN PRIVATE KEY-----\n")
        assert _same(keys.parse_private_key(pem), key)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not a private key in PEM form"),
        (b"hello", "not a private key in PEM form"),
        (_pem(RSA, serialization.PrivateFormat.PKCS8, b"secret"), "encrypted"),
        (
            _pem(ec.generate_private_key(ec.SECP256R1()), serialization.PrivateFormat.PKCS8),
            "neither",
        ),
        (
            _pem(_small_rsa(), serialization.PrivateFormat.PKCS8),
            "-bit RSA key; DKIM keys need 1024 to 4096 bits",
        ),
        (
            RSA.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
            "not a private key",
        ),
    ],
    ids=["empty", "text", "encrypted", "ec", "small", "public"],
)
def test_parse_refuses(data: bytes, message: str) -> None:
    with pytest.raises(BadKey, match=message):
        keys.parse_private_key(data)


def test_parse_checks_the_algorithm() -> None:
    with pytest.raises(BadKey, match="the key is rsa, not ed25519"):
        keys.parse_private_key(keys.format_private_key(RSA), algorithm=Algorithm.ED25519)


def test_errors_never_quote_key_material() -> None:
    pem = _pem(RSA, serialization.PrivateFormat.PKCS8)
    broken = pem.replace(b"\n", b"\n!", 3)
    with pytest.raises(BadKey) as caught:
        keys.parse_private_key(broken)
    body = b"".join(pem.splitlines()[1:-1]).decode()
    assert all(body[i : i + 16] not in str(caught.value) for i in range(0, len(body) - 16, 16))


@pytest.mark.parametrize("selector", ["postwarden", "s1", "a", "2024-01", "A" * 63, "x-y-z"])
def test_valid_selectors(selector: str) -> None:
    assert keys.check_selector(selector) == selector


@pytest.mark.parametrize(
    "selector", ["", "-a", "a-", "a.b", "a_b", "a/b", "..", "A" * 64, "é", "a b"]
)
def test_invalid_selectors(selector: str) -> None:
    with pytest.raises(BadSelector, match="is not a selector"):
        keys.check_selector(selector)


def test_write_read_remove(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    path = keys.write_key(state, "example.com", "sel", ED)
    assert path == state / "dkim" / "example.com" / "sel.pem"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE((state / "dkim").stat().st_mode) == 0o700
    assert os.listdir(path.parent) == ["sel.pem"]  # no temporary file left
    assert _same(keys.read_key(path, trusted=True), ED)
    with pytest.raises(KeyFileExists, match="exists already"):
        keys.write_key(state, "example.com", "sel", RSA)
    assert _same(keys.read_key(path), ED)  # the old file is untouched
    assert keys.remove_key(state, "example.com", "sel")
    assert not keys.remove_key(state, "example.com", "sel")


def test_write_narrows_a_wide_directory(tmp_path: Path) -> None:
    (tmp_path / "dkim").mkdir(mode=0o755)
    (tmp_path / "dkim").chmod(0o755)
    keys.write_key(tmp_path, "example.com", "sel", ED)
    assert stat.S_IMODE((tmp_path / "dkim").stat().st_mode) == 0o700


def test_read_key_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("nonsense")
    with pytest.raises(BadKey, match=f"{bad}: not a private key"):
        keys.read_key(bad)


def test_key_path_checks_the_selector(tmp_path: Path) -> None:
    with pytest.raises(BadSelector):
        keys.key_path(tmp_path, "example.com", "../x")
