"""DKIM private keys: generate, parse, format, and keep them in the state directory.

Description:
    Keys are RSA (1024 or 2048 bits when we generate them; 1024 to 4096 on import) or
    Ed25519 (RFC 8463), handled with ``cryptography``. On disk each key is one PKCS#8 PEM
    file, ``STATE_DIR/dkim/DOMAIN/SELECTOR.pem``, mode 0600, in directories of mode 0700,
    all owned by the service user (the owner of the state directory): the command line runs
    as root and creates them inside :func:`~postwarden.util.privileges.as_owner_of`.

    :func:`parse_private_key` also reads what other signers wrote, for migrations: PKCS#1
    RSA PEM (OpenDKIM's ``SELECTOR.private``) and dkimpy's Ed25519 format (the base64 of the
    32-byte RFC 8032 seed, as ``dknewkey --ktype ed25519`` writes it).

    Loading cost: ``cryptography`` checks an RSA key's consistency on load (about 50 ms for
    2048 bits). Keys are checked when they are created or imported; a daemon loading keys
    this module wrote may pass ``trusted=True`` to skip the check, and must load each key
    once (at start and on reload), never per message.

Errors:
    :class:`BadKey` (not a usable private key; the message never quotes key material),
    :class:`BadSelector`, :class:`KeyFileExists`; ``OSError`` for I/O problems.

Security:
    Key material is never printed, logged or put in an exception message. Files are created
    with mode 0600 from the start (``mkstemp``), then linked into place, so a key is never
    readable by others, not even for a moment, and never half-written under its final name.
"""

from __future__ import annotations

import base64
import binascii
import enum
import os
import re
import tempfile
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from postwarden.errors import PostwardenError
from postwarden.settings.model import SELECTOR
from postwarden.util.privileges import as_owner_of

PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey

GENERATED_RSA_BITS = (1024, 2048)
DEFAULT_RSA_BITS = 2048
IMPORTED_RSA_BITS = (1024, 4096)  # inclusive bounds; RFC 8301 forbids fewer than 1024
ED25519_BITS = 256
KEY_DIR = "dkim"
_SELECTOR = re.compile(SELECTOR.pattern.pattern if SELECTOR.pattern else r"\S+")
_BASE64_SEED = re.compile(rb"\s*[A-Za-z0-9+/]{43}=\s*")


class BadKey(PostwardenError):
    """Not a usable DKIM private key."""


class BadSelector(PostwardenError):
    """Not a valid selector."""


class KeyFileExists(PostwardenError):
    """A key file for this selector exists already."""


class Algorithm(enum.StrEnum):
    """Key types, named as in the record's ``k=`` tag."""

    RSA = "rsa"
    ED25519 = "ed25519"

    @property
    def signature_name(self) -> str:
        """The signature's ``a=`` value."""
        return f"{self.value}-sha256"

    @classmethod
    def from_text(cls, text: str) -> Algorithm:
        try:
            return cls(text.strip().lower())
        except ValueError:
            raise BadKey(f"{text!r} is not a DKIM key algorithm (rsa or ed25519)") from None


def check_selector(text: str) -> str:
    """*text* if it is a valid selector, else :class:`BadSelector` naming it."""
    if len(text) > SELECTOR.max_length or not _SELECTOR.fullmatch(text):
        raise BadSelector(f"{text!r} is not {SELECTOR.description}")
    return text


def generate(algorithm: Algorithm, bits: int | None = None) -> PrivateKey:
    """A new key; *bits* only for RSA (1024 or 2048, default 2048)."""
    if algorithm is Algorithm.ED25519:
        if bits is not None and bits != ED25519_BITS:
            raise BadKey("an Ed25519 key has no choice of size (--bits is for RSA keys)")
        return ed25519.Ed25519PrivateKey.generate()
    bits = DEFAULT_RSA_BITS if bits is None else bits
    if bits not in GENERATED_RSA_BITS:
        raise BadKey(f"{bits} is not a key size we generate (1024 or 2048)")
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def algorithm_of(key: PrivateKey) -> Algorithm:
    return Algorithm.ED25519 if isinstance(key, ed25519.Ed25519PrivateKey) else Algorithm.RSA


def bits_of(key: PrivateKey) -> int:
    """The key size: the modulus length for RSA, 256 for Ed25519."""
    return ED25519_BITS if isinstance(key, ed25519.Ed25519PrivateKey) else key.key_size


def format_private_key(key: PrivateKey) -> bytes:
    """*key* as unencrypted PKCS#8 PEM (the on-disk form)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def parse_private_key(
    data: bytes, *, algorithm: Algorithm | None = None, trusted: bool = False
) -> PrivateKey:
    """A private key from PKCS#8 or PKCS#1 PEM, or dkimpy's base64 Ed25519 seed.

    *algorithm*, when given, must be the key's. *trusted* skips ``cryptography``'s RSA
    consistency check (about 50 ms); use it only for files :func:`write_key` wrote.
    """
    if _BASE64_SEED.fullmatch(data):
        try:
            key: object = ed25519.Ed25519PrivateKey.from_private_bytes(
                base64.b64decode(data.strip(), validate=True)
            )
        except (binascii.Error, ValueError):
            raise BadKey("not a valid dkimpy Ed25519 private key") from None
    else:
        try:
            key = serialization.load_pem_private_key(
                data, password=None, unsafe_skip_rsa_key_validation=trusted
            )
        except TypeError:
            raise BadKey("the private key is encrypted; decrypt it first") from None
        except ValueError:
            raise BadKey(
                "not a private key in PEM form (PKCS#8 or PKCS#1) nor dkimpy's Ed25519 form"
            ) from None
        except UnsupportedAlgorithm:
            raise BadKey("a private key of an algorithm DKIM does not use") from None
    if not isinstance(key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
        raise BadKey(f"a {type(key).__name__.removeprefix('_')} is neither RSA nor Ed25519")
    if algorithm is not None and algorithm_of(key) is not algorithm:
        raise BadKey(f"the key is {algorithm_of(key).value}, not {algorithm.value}")
    if isinstance(key, rsa.RSAPrivateKey):
        low, high = IMPORTED_RSA_BITS
        if not low <= key.key_size <= high:
            raise BadKey(f"a {key.key_size}-bit RSA key; DKIM keys need {low} to {high} bits")
    return key


def key_path(state_dir: Path, domain: str, selector: str) -> Path:
    """Where the key of *selector* of *domain* lives."""
    return state_dir / KEY_DIR / domain / f"{check_selector(selector)}.pem"


def write_key(state_dir: Path, domain: str, selector: str, key: PrivateKey) -> Path:
    """Store *key* for (*domain*, *selector*) as the state directory's owner; never replaces.

    :raises KeyFileExists: when the file exists already (it is left alone).
    """
    if not domain or "/" in domain or domain.startswith("."):
        raise BadKey(f"{domain!r} cannot name a key directory")
    path = key_path(state_dir, domain, selector)
    pem = format_private_key(key)
    with as_owner_of(state_dir):
        for directory in (state_dir / KEY_DIR, path.parent):
            _private_dir(directory)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".new-", suffix=".tmp")  # 0600
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(pem)
                out.flush()
                os.fsync(out.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise KeyFileExists(f"{path} exists already; nothing was changed") from None
        finally:
            os.unlink(tmp)
        _fsync_dir(path.parent)
    return path


def read_key(path: Path, *, trusted: bool = False) -> PrivateKey:
    """Load the key file *path* (see :func:`parse_private_key` for *trusted*)."""
    try:
        return parse_private_key(path.read_bytes(), trusted=trusted)
    except BadKey as exc:
        raise BadKey(f"{path}: {exc}") from None


def remove_key(state_dir: Path, domain: str, selector: str) -> bool:
    """Delete the key file of (*domain*, *selector*); False when there was none."""
    path = key_path(state_dir, domain, selector)
    with as_owner_of(state_dir):
        try:
            path.unlink()
        except FileNotFoundError:
            return False
    return True


def _private_dir(directory: Path) -> None:
    """Create *directory* with mode 0700, or narrow an existing one of ours to 0700."""
    try:
        directory.mkdir(mode=0o700)
    except FileExistsError:
        if not directory.is_dir():
            raise
        st = directory.stat()
        if st.st_uid == os.geteuid() and st.st_mode & 0o077:
            directory.chmod(0o700)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
