"""Read Postfix parameters and query its lookup tables with ``postconf`` and ``postmap``.

Description:
    Used by the command line only (``check --postfix``, ``postfix-config``), never on a
    request path. ``config_dir`` selects a Postfix instance (``postconf -c DIR``).

Errors:
    :class:`PostfixUnavailable` when the tools are missing or fail.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
from collections.abc import Sequence

from postwarden.errors import PostwardenError

ADDRESS_CLASSES = (
    "mydestination",
    "virtual_alias_domains",
    "virtual_mailbox_domains",
    "relay_domains",
)


class PostfixUnavailable(PostwardenError):
    """Postfix's postconf/postmap could not be run."""


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    if shutil.which(argv[0]) is None:
        raise PostfixUnavailable(f"{argv[0]} not found: is Postfix installed?")
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)


def _config_args(config_dir: str | None) -> list[str]:
    return ["-c", config_dir] if config_dir else []


def parameters(
    names: Sequence[str], config_dir: str | None = None, *, expand: bool = True
) -> dict[str, str]:
    """The values of Postfix parameters: expanded (``postconf -xh``) or as written."""
    result = _run(["postconf", *_config_args(config_dir), "-xh" if expand else "-h", *names])
    if result.returncode != 0:
        raise PostfixUnavailable(f"postconf failed: {result.stderr.strip()}")
    values = result.stdout.splitlines()
    return dict(zip(names, values, strict=True))


def split_list(value: str) -> list[str]:
    """A Postfix list value: items separated by commas and/or whitespace."""
    return [item for item in re.split(r"[\s,]+", value) if item]


def set_parameters(argv: Sequence[str], config_dir: str | None = None) -> None:
    """Run ``postconf [-c DIR] ARGV`` (``-e name=value`` or ``-P service/type/name=value``)."""
    result = _run(["postconf", *_config_args(config_dir), *argv])
    if result.returncode != 0:
        raise PostfixUnavailable(f"postconf {' '.join(argv)} failed: {result.stderr.strip()}")


def inet_listeners(config_dir: str | None = None) -> set[tuple[str, int]]:
    """(address, port) of every ``inet`` service in master.cf; ``*`` for all addresses."""
    result = _run(["postconf", *_config_args(config_dir), "-M"])
    if result.returncode != 0:
        raise PostfixUnavailable(f"postconf -M failed: {result.stderr.strip()}")
    listeners: set[tuple[str, int]] = set()
    for line in result.stdout.splitlines():
        fields = line.split()
        if len(fields) < 2 or fields[1] != "inet":
            continue
        host, _, port = fields[0].rpartition(":")
        number = int(port) if port.isdigit() else _service_port(port)
        if number:
            listeners.add((host.strip("[]") or "*", number))
    return listeners


def _service_port(name: str) -> int:
    try:
        return socket.getservbyname(name, "tcp")
    except OSError:
        return 0


def service_overrides(config_dir: str | None = None) -> dict[str, str]:
    """Every ``-o`` override in master.cf: ``service/type/name`` → value (``postconf -P``)."""
    result = _run(["postconf", *_config_args(config_dir), "-P"])
    if result.returncode != 0:
        raise PostfixUnavailable(f"postconf -P failed: {result.stderr.strip()}")
    overrides = {}
    for line in result.stdout.splitlines():
        name, sep, value = line.partition(" = ")
        if sep:
            overrides[name.strip()] = value.strip()
    return overrides


def has_service(service: str, config_dir: str | None = None) -> bool:
    """Whether master.cf defines *service* (``name/type``, ``postconf -M``)."""
    return bool(_run(["postconf", *_config_args(config_dir), "-M", service]).stdout.strip())


def table_has(table: str, key: str, config_dir: str | None = None) -> bool | None:
    """Whether ``postmap -q KEY TABLE`` finds *key*; ``None`` when the table cannot be read."""
    result = _run(["postmap", *_config_args(config_dir), "-q", key, table])
    if result.returncode == 0:
        return True
    if result.returncode == 1 and not result.stderr.strip():
        return False
    return None
