"""DKIM private keys in the PostgreSQL store, optionally encrypted with a key file.

Description:
    ``dkim_private_keys`` holds each key as PKCS#8 PEM, or — when the store URL names a
    ``dkim_key_file`` — encrypted with the key in that file (Fernet: AES-128-CBC and
    HMAC-SHA256, from ``cryptography``), so a copy of the database (a dump, a replica's
    disk) holds no usable key. Configuration management distributes the key file to every
    node; a node without it can still read keys stored in the clear.

    The key file holds one Fernet key: 32 random bytes in URL-safe base64, e.g.
    ``openssl rand 32 | basenc --base64url``.

Errors:
    :class:`KeyFileProblem` (missing, unreadable, not a key, or not the key a stored key
    was sealed with); :class:`~postwarden.dkim.keys.BadKey`.

Security:
    Only postwarden's database role may read the table (it is revoked from PUBLIC); key
    material is never logged or put in a message. The key file should be 0640, root and
    the service user's group.
"""

from __future__ import annotations

import binascii
from pathlib import Path
from typing import Any

import psycopg
import psycopg.errors
from cryptography.fernet import Fernet, InvalidToken

from postwarden.dkim import keys
from postwarden.errors import PostwardenError
from postwarden.state.db import Duplicate


class KeyFileProblem(PostwardenError):
    """The DKIM key file cannot be used."""


def cipher(key_file: str | None) -> Fernet | None:
    """The cipher of *key_file*; None without one."""
    if not key_file:
        return None
    try:
        text = Path(key_file).read_bytes().strip()
    except OSError as exc:
        raise KeyFileProblem(f"dkim_key_file {key_file}: {exc.strerror or exc}") from None
    try:
        return Fernet(text)
    except (ValueError, binascii.Error):
        raise KeyFileProblem(
            f"dkim_key_file {key_file}: not a key (32 random bytes in URL-safe base64)"
        ) from None


def seal(pem: bytes, fernet: Fernet | None) -> tuple[bool, bytes]:
    return (True, fernet.encrypt(pem)) if fernet is not None else (False, pem)


def unseal(sealed: bool, material: bytes, fernet: Fernet | None, what: str) -> bytes:
    if not sealed:
        return material
    if fernet is None:
        raise KeyFileProblem(f"{what} is encrypted: name the key file (dkim_key_file=...)")
    try:
        return fernet.decrypt(material)
    except InvalidToken:
        raise KeyFileProblem(f"{what} was encrypted with another key file") from None


def write(
    conn: psycopg.Connection,
    domain: str,
    selector: str,
    key: keys.PrivateKey,
    fernet: Fernet | None,
) -> None:
    sealed, material = seal(keys.format_private_key(key), fernet)
    try:
        conn.execute(
            "INSERT INTO dkim_private_keys (domain, selector, sealed, material)"
            " VALUES (%s, %s, %s, %s)",
            (domain, keys.check_selector(selector), sealed, material),
        )
    except psycopg.errors.UniqueViolation:
        raise Duplicate(f"{domain} has a key with selector {selector!r} already") from None


def read(
    conn: psycopg.Connection, domain: str, selector: str, fernet: Fernet | None
) -> keys.PrivateKey:
    row = conn.execute(
        "SELECT sealed, material FROM dkim_private_keys WHERE domain = %s AND selector = %s",
        (domain, selector),
    ).fetchone()
    what = f"the DKIM key {selector!r} of {domain}"
    if row is None:
        raise keys.BadKey(f"{what} is not in the database")
    pem = unseal(bool(row[0]), bytes(row[1]), fernet, what)
    return keys.parse_private_key(pem, trusted=True)


def remove(conn: psycopg.Connection, domain: str, selector: str) -> bool:
    cursor = conn.execute(
        "DELETE FROM dkim_private_keys WHERE domain = %s AND selector = %s", (domain, selector)
    )
    return cursor.rowcount > 0


def active(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """The keys that sign, with their (possibly sealed) material, by domain: what nodes cache.

    An active key whose published record the key watch found wrong (``failing``) does not
    sign (as :func:`postwarden.dkim.store.signing_keys`).
    """
    rows = conn.execute(
        "SELECT k.domain, k.selector, k.algorithm, k.created, p.sealed, p.material"
        " FROM dkim_keys k JOIN dkim_private_keys p USING (domain, selector)"
        " WHERE k.status = 'active' AND k.failing IS NULL ORDER BY k.domain, k.selector"
    ).fetchall()
    return [
        {
            "domain": d,
            "selector": s,
            "algorithm": a,
            "created": c,
            "sealed": bool(sealed),
            "material": bytes(material).decode("latin-1"),
        }
        for d, s, a, c, sealed, material in rows
    ]
