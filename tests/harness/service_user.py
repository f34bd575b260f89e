"""The unprivileged service user of the daemons, and process helpers for tests.

Description:
    postwarden's daemons run in production as their own system user, reading files the CLI
    (run as root) wrote. Tests run as root, so they must start the daemons as that user on
    purpose, or root's powers hide permission bugs. This module creates the user (idempotent),
    starts a process as it with a clean environment and no inherited supplementary groups,
    stops such a process reliably, and waits for a server socket to be listening.

    The waits look at the kernel's socket tables (/proc/net/...) instead of connecting, so a
    readiness probe never becomes a session the server under test has to handle.

Errors:
    ServiceUserError when the user cannot be created; TimeoutError when a socket does not appear
    in time; ProcessExitedError when the process meant to open it has already exited.

Security:
    The child gets only PATH, LANG, HOME and what the caller adds: no root environment leaks in.
"""

from __future__ import annotations

import contextlib
import grp
import ipaddress
import os
import pwd
import random
import signal
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .wait import ProcessExitedError, wait_until

__all__ = ["ProcessExitedError"]  # raised by the waits below

SERVICE_USER = "postwarden"
CLEAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp{,6}
_SO_ACCEPTCON = 0x10000  # listening flag in /proc/net/unix
_PORT_RANGE = (20000, 32000)  # below net.ipv4.ip_local_port_range (32768-60999)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class ServiceUserError(RuntimeError):
    """The service user could not be created."""


@dataclass(frozen=True)
class ServiceUser:
    """A system account: name, uid and primary gid."""

    name: str
    uid: int
    gid: int


def ensure_service_user(name: str = SERVICE_USER) -> ServiceUser:
    """Create the system user and group `name` unless they exist; return the account."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        _useradd(name)
        entry = pwd.getpwnam(name)
    return ServiceUser(name=name, uid=entry.pw_uid, gid=entry.pw_gid)


def _useradd(name: str) -> None:
    """Run useradd; reuse an existing group of the same name instead of failing on it."""
    try:
        grp.getgrnam(name)
        group_args = ["--gid", name]
    except KeyError:
        group_args = ["--user-group"]
    argv = [
        "useradd",
        "--system",
        "--no-create-home",
        "--home-dir",
        "/nonexistent",
        "--shell",
        "/usr/sbin/nologin",
        *group_args,
        name,
    ]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ServiceUserError(f"{' '.join(argv)}: exit {done.returncode}: {done.stderr.strip()}")


def service_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The clean environment of a service process, plus `extra`.

    MAIL_CONFIG is passed on: the tests' stand-in for the machine's Postfix configuration.
    """
    env = {"PATH": CLEAN_PATH, "LANG": "C.UTF-8", "HOME": "/nonexistent"}
    if "MAIL_CONFIG" in os.environ:
        env["MAIL_CONFIG"] = os.environ["MAIL_CONFIG"]
    env.update(extra or {})
    return env


def spawn_as_service_user(
    argv: list[str],
    *,
    user: ServiceUser | None = None,
    env: dict[str, str] | None = None,
    **popen_kwargs: Any,
) -> subprocess.Popen[bytes]:
    """Start `argv` as the service user, in its own session, with a clean environment.

    `env` entries are added to the clean environment (they do not replace it). Other keyword
    arguments go to subprocess.Popen; the working directory defaults to "/".
    """
    account = user or ensure_service_user()
    popen_kwargs.setdefault("cwd", "/")
    return subprocess.Popen(
        argv,
        user=account.uid,
        group=account.gid,
        extra_groups=[],
        env=service_env(env),
        start_new_session=True,
        **popen_kwargs,
    )


def stop_process(proc: subprocess.Popen[Any], timeout: float = 5.0) -> int:
    """Stop a process and return its exit status.

    SIGTERM (to its whole process group when it leads one, as spawned processes do), wait up
    to `timeout`, SIGKILL as a last resort; then SIGKILL whatever is left of its group.
    """
    if proc.poll() is None:
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait(timeout)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # a group with this id exists only if it led one
    return proc.returncode


def _signal_group(pid: int, sig: signal.Signals) -> None:
    """Signal the process group led by `pid` (the session spawn started), or just `pid`."""
    with contextlib.suppress(ProcessLookupError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


_handed_out: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on `host`, below the kernel's ephemeral range (no clash with clients).

    Never the same port twice in one test run: a port is chosen before its server binds it
    (a fleet picks some thirty before the first starts), so "free now" alone lets two
    listeners of one test draw the same number.
    """
    family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    for _ in range(200):
        port = random.randrange(*_PORT_RANGE)
        if port in _handed_out:
            continue
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((host, port))
            except OSError:
                continue
            _handed_out.add(port)
            return port
    raise RuntimeError(f"no free port on {host} in {_PORT_RANGE}")


def wait_for_port(
    host: str,
    port: int,
    timeout: float = 5.0,
    proc: subprocess.Popen[Any] | None = None,
) -> None:
    """Wait until a TCP socket listens on host:port (or on the wildcard address and port)."""
    wanted = ipaddress.ip_address(host)
    wait_until(
        lambda: any(
            addr in (wanted, _wildcard(wanted)) and lport == port
            for addr, lport in _tcp_listeners()
        ),
        f"TCP listener on {host}:{port}",
        timeout,
        proc=proc,
    )


def wait_for_unix_socket(
    path: str | Path,
    timeout: float = 5.0,
    proc: subprocess.Popen[Any] | None = None,
) -> None:
    """Wait until a stream socket listens on the UNIX-domain `path`."""
    wanted = str(path)
    wait_until(
        lambda: wanted in _unix_listeners(), f"UNIX listener on {wanted}", timeout, proc=proc
    )


def _wildcard(addr: IPAddress) -> IPAddress:
    """The unspecified address of the same family (0.0.0.0 or ::)."""
    return ipaddress.ip_address("0.0.0.0" if addr.version == 4 else "::")


def _tcp_listeners() -> list[tuple[IPAddress, int]]:
    """(address, port) of every listening TCP socket in this network namespace."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != _LISTEN:
                continue
            hexaddr, hexport = fields[1].split(":")
            found.append((_decode_proc_addr(hexaddr), int(hexport, 16)))
    return found


def _decode_proc_addr(hexaddr: str) -> IPAddress:
    """Decode /proc/net/tcp's address: host-order 32-bit words in hex."""
    raw = bytes.fromhex(hexaddr)
    words = [raw[i : i + 4][::-1] for i in range(0, len(raw), 4)]
    return ipaddress.ip_address(b"".join(words))


def _unix_listeners() -> set[str]:
    """Paths of every listening UNIX-domain socket."""
    paths = set()
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) == 8 and int(fields[3], 16) & _SO_ACCEPTCON:
            paths.add(fields[7])
    return paths
