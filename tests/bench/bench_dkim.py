"""DKIM signer: full signatures per second of a 10 KB message, RSA-2048 and Ed25519.

Target (brief): >= 700 RSA-2048 signatures/s on the 2-core development machine. A "full
signature" is what the milter pays per message: canonicalize and hash the body, pick and
canonicalize the headers, sign, fold. dkimpy's own ``dkim.sign`` is measured for reference,
and the cost of loading a key (done once per key at start and on reload, never per message).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from postwarden.dkim.keys import format_private_key, parse_private_key
from postwarden.milter.dkim_sign import body_hash, sign

RUNS = 7
TARGET_RSA = 700


def _message() -> tuple[list[tuple[str, bytes]], bytes]:
    headers = [
        ("Received", b" from client.example (client.example [192.0.2.1])\n\tby mx.example.com"),
        ("From", b" Alice Example <alice@example.com>"),
        ("To", b" Bob <bob@example.net>, Carol <carol@example.net>"),
        ("Cc", b" dave@example.org"),
        ("Subject", " Quarterly report \u2014 draft for review".encode()),
        ("Date", b" Tue, 5 Mar 2024 10:00:00 +0100"),
        ("Message-ID", b" <20240305100000.12345@example.com>"),
        ("MIME-Version", b" 1.0"),
        ("Content-Type", b" text/plain; charset=utf-8"),
        ("Content-Transfer-Encoding", b" 8bit"),
        ("X-Mailer", b" bench"),
    ]
    line = b"The quick brown fox jumps over the lazy dog, again and again and again.\r\n"
    body = line * (10_240 // len(line))
    return headers, body


def _rate(work: Callable[[], object], seconds: float = 0.4) -> float:
    """Operations per second of *work*: the median of RUNS rounds of about *seconds* each."""
    start, done = time.perf_counter(), 0
    while time.perf_counter() - start < 0.05 or done < 2:  # warm up and estimate
        work()
        done += 1
    count = max(3, int(seconds * done / (time.perf_counter() - start)))
    rates = []
    for _ in range(RUNS):
        start = time.perf_counter()
        for _ in range(count):
            work()
        rates.append(count / (time.perf_counter() - start))
    return statistics.median(rates)


def _wire(headers: list[tuple[str, bytes]], body: bytes) -> bytes:
    lines = b"".join(n.encode() + b":" + v.replace(b"\n", b"\r\n") + b"\r\n" for n, v in headers)
    return lines + b"\r\n" + body


def main() -> None:
    headers, body = _message()
    size = len(_wire(headers, body))
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ed_key = ed25519.Ed25519PrivateKey.generate()
    print(f"message: {size:,} bytes ({len(headers)} header fields); median of {RUNS} rounds")

    hashing = _rate(lambda: body_hash(body))
    print(f"body canonicalization + SHA-256: {1e6 / hashing:.1f} us per message")
    rsa_rate = _rate(lambda: sign(headers, body, domain="example.com", selector="s", key=rsa_key))
    print(
        f"sign RSA-2048: {rsa_rate:,.0f} signatures/s ({1e3 / rsa_rate:.2f} ms each;"
        f" target >= {TARGET_RSA}/s)"
    )
    ed_rate = _rate(lambda: sign(headers, body, domain="example.com", selector="s", key=ed_key))
    print(f"sign Ed25519:  {ed_rate:,.0f} signatures/s ({1e3 / ed_rate:.3f} ms each)")

    pem = rsa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    wire = _wire(headers, body)
    reference = _rate(
        lambda: dkim.sign(
            wire,
            b"s",
            b"example.com",
            pem,
            canonicalize=(b"relaxed", b"relaxed"),
        ),
        seconds=1.0,
    )
    print(
        f"reference dkimpy dkim.sign RSA-2048: {reference:,.0f} signatures/s"
        f" ({rsa_rate / reference:.1f}x slower than ours)"
    )

    ours = format_private_key(rsa_key)
    checked = _rate(lambda: parse_private_key(ours), seconds=1.0)
    trusted = _rate(lambda: parse_private_key(ours, trusted=True))
    print(
        f"load an RSA-2048 key (once per key and reload): {1e3 / checked:.1f} ms checked,"
        f" {1e3 / trusted:.2f} ms with trusted=True"
    )


if __name__ == "__main__":
    main()
