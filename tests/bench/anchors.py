"""The anchors postwarden's figures are read against: OpenDKIM, Postfix ``cidr:`` tables.

Description:
    :class:`OpenDkim` runs Debian's OpenDKIM (installed with apt when missing; root) as the
    service user on a unix socket, signing with the same key, selector and
    canonicalisation as postwarden-milter, the way Debian's package runs it (its default
    socket is a unix socket). :func:`cidr_table` writes IP list entries as a Postfix
    ``cidr:`` table, the reference for what the policy daemon answers at the SMTP level.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

from tests.harness import ServiceUser, spawn_as_service_user, stop_process, wait_for_unix_socket


def ensure_package(command: str, package: str) -> str:
    """The path of *command*, installing Debian's *package* first if it is missing."""
    found = shutil.which(command, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if found:
        return found
    print(f"installing {package} (apt) for the benchmark's anchor")
    subprocess.run(["tools/install-system-deps", package], check=True)
    found = shutil.which(command, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if not found:
        raise RuntimeError(f"{package} installed but {command} not found")
    return found


class OpenDkim:
    """``opendkim -f`` signing for *domain* with the key in *key_pem*, on a unix socket."""

    def __init__(
        self, base: Path, user: ServiceUser, *, domain: str, selector: str, key_pem: bytes,
        socket_path: Path,
    ) -> None:  # fmt: skip
        self.binary = ensure_package("opendkim", "opendkim")
        self.base = base
        self.user = user
        self.socket_path = socket_path
        base.mkdir(mode=0o700, exist_ok=True)
        key = base / f"{selector}.private"
        key.write_bytes(key_pem)
        key.chmod(0o600)
        self.config = base / "opendkim.conf"
        self.config.write_text(
            "Syslog no\n"
            "UMask 007\n"
            "Mode s\n"
            "Canonicalization relaxed/relaxed\n"
            "SignatureAlgorithm rsa-sha256\n"
            f"Domain {domain}\n"
            f"Selector {selector}\n"
            f"KeyFile {key}\n"
            f"Socket local:{socket_path}\n"
            f"PidFile {base / 'opendkim.pid'}\n"
            "InternalHosts 127.0.0.0/8\n"
            "OversignHeaders From\n"
            # the harness lives under /tmp, which OpenDKIM's safety check refuses; the key
            # itself is 0600 in a 0700 directory of the service user
            "RequireSafeKeys false\n"
        )
        for path in (base, key, self.config):
            shutil.chown(path, user.uid, user.gid)
        self.log = base / "opendkim.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self._proc = spawn_as_service_user(
                [self.binary, "-f", "-x", str(self.config)],
                user=self.user,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for_unix_socket(self.socket_path, timeout=15, proc=self._proc)

    def stop(self) -> None:
        if self._proc is not None:
            stop_process(self._proc)
            self._proc = None

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid


def cidr_table(path: Path, allowed: Iterable[str], blocked: Iterable[str]) -> str:
    """A ``cidr:`` table: allowed entries ``OK``, blocked ``REJECT``; first match wins."""
    lines = [f"{entry} OK\n" for entry in allowed]
    lines += [f"{entry} REJECT blocked by the policy of example.com\n" for entry in blocked]
    path.write_text("".join(lines))
    return f"cidr:{path}"
