"""postwarden as it runs in production, for integration tests.

Description:
    :class:`Installation` lays out what a real host has: ``etc/postwarden/settings.yaml``
    written by the ``postwarden`` command run as root (0640, group postwarden), and a state
    directory owned by the service user. :class:`Policyd` runs ``postwarden-policyd`` as the
    unprivileged service user on loopback ports, the way the systemd unit does, so permission
    mistakes fail here rather than in production.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from postwarden.state.daemon_status import DaemonStatus
from postwarden.store import Store, open_store
from postwarden.store.base import StoreUnavailable
from tests.harness import (
    PostfixInstance,
    ServiceUser,
    free_port,
    service_env,
    spawn_as_service_user,
    stop_process,
    wait_for_port,
    wait_for_unix_socket,
)
from tests.harness.wait import wait_until

PYTHON = sys.executable


class Installation:
    """Settings and state directories of one postwarden installation under *base*."""

    def __init__(
        self,
        base: Path,
        user: ServiceUser,
        primary: str = "hosted.test",
        *,
        store: str | None = None,
        node: str = "",
        init: bool = True,
    ) -> None:
        """*store*: a shared store's URL (a fleet node: ``init`` unless it has settings)."""
        self.base = base
        self.user = user
        self.store = store
        self.node = node
        self.settings = base / "etc" / "postwarden" / "settings.yaml"
        self.state_dir = base / "state"
        self.state_dir.mkdir(mode=0o750, parents=True)
        os.chown(self.state_dir, user.uid, user.gid)
        self.postfix_config_dir: Path | None = None  # the Postfix instance it serves
        self.running: list[ServiceDaemon] = []  # started and not stopped
        done = self.cli("init", primary, check=store is None) if init else None
        if done is not None and done.returncode and "holds settings already" not in done.stderr:
            raise AssertionError(f"postwarden init: {done.returncode}\n{done.stderr}")

    def store_options(self) -> list[str]:
        """The options naming this installation's store, for commands and daemons."""
        options = ["--settings", str(self.settings), "--state-dir", str(self.state_dir)]
        return [*options, "--store", self.store] if self.store else options

    def cli(
        self, *argv: str, check: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``postwarden ARGV`` as root, as an administrator would.

        ``MAIL_CONFIG`` names the Postfix instance this installation serves, once wired;
        before, the session's stand-in for the machine's Postfix (tests/conftest.py).
        """
        env = dict(os.environ)
        if self.postfix_config_dir is not None:
            env["MAIL_CONFIG"] = str(self.postfix_config_dir)
        done = subprocess.run(
            [
                PYTHON,
                "-m",
                "postwarden.cli",
                *self.store_options(),
                *argv,
            ],
            capture_output=True,
            text=True,
            check=False,
            input=stdin,
            timeout=60,
            env=env,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"postwarden {' '.join(argv)}: {done.returncode}\n{done.stderr}")
        return done

    def cli_json(self, *argv: str) -> Any:
        return json.loads(self.cli(*argv, "--json").stdout)

    def _store(self) -> Store:
        url = self.store or "file:"
        return open_store(url, settings_path=self.settings, state_dir=self.state_dir)

    def digest(self) -> str:
        """The settings version as the daemons report it: the SHA-256 of the document."""
        return self._store().document_digest()

    def reported(self) -> list[DaemonStatus]:
        """What the daemons last reported, in the store (read as the CLI reads it)."""
        return self._store().daemons()

    def in_force(self, timeout: float = 10.0) -> None:
        """Wait until every running daemon reports the settings file as it is now."""
        for daemon in self.running:
            daemon.wait_for_settings(self.digest(), timeout)

    def write(self, text: str) -> None:
        """Replace the settings file the way config management does (atomic rename)."""
        tmp = self.settings.with_name(".settings.tmp")
        tmp.write_text(text)
        st = self.settings.stat()
        os.chown(tmp, st.st_uid, st.st_gid)
        os.chmod(tmp, st.st_mode & 0o777)
        os.replace(tmp, self.settings)


class ServiceDaemon:
    """A postwarden daemon running as the service user, the way its systemd unit runs it.

    It is ready when it listens and has reported (in the state database) the settings
    version it answers with.
    """

    module = ""
    log_name = ""
    program = ""

    def __init__(self, installation: Installation) -> None:
        self.installation = installation
        self.metrics_port = free_port()
        self.log_path = installation.base / self.log_name
        self.process: subprocess.Popen[bytes] | None = None
        self.log_start = 0  # where this run's lines begin in the log

    def arguments(self) -> list[str]:
        """The daemon's own options (its listeners)."""
        raise NotImplementedError

    def wait_until_listening(self) -> None:
        raise NotImplementedError

    def wait_until_ready(self) -> None:
        self.wait_until_listening()
        try:
            digest = self.installation.digest()
        except StoreUnavailable:
            # A fleet node with its database down: there is nowhere to report to; the
            # daemon serves its cached settings once it says it started (or exits).
            self.wait_for_log(rf"{self.program} started", since=self.log_start, timeout=15)
            return
        self.wait_for_settings(digest)

    def wait_for_settings(self, digest: str, timeout: float = 15.0) -> None:
        """Wait until this process reports that it answers with settings version *digest*."""

        def reported() -> bool:
            return self.process is not None and any(
                row.name == self.program and row.pid == self.process.pid and row.digest == digest
                for row in self.installation.reported()
            )

        what = f"{self.program} on settings {digest[:12]}"
        wait_until(reported, what, timeout, proc=self.process)

    def start(self, env: dict[str, str] | None = None, *, as_root: bool = False) -> None:
        """Start as the service user; *env* adds to its (clean) environment.

        *as_root*: start as root, as an init system without ``User=`` would; the daemon is
        to drop to the service user itself (``--user``).
        """
        inst = self.installation
        argv = [
            PYTHON,
            "-m",
            self.module,
            *inst.store_options(),
            "--metrics",
            f"inet:127.0.0.1:{self.metrics_port}",
            *self.arguments(),
        ]
        if inst.node:
            env = {"POSTWARDEN_NODE": inst.node, **(env or {})}
        self.log_start = self.log_mark()
        with open(self.log_path, "ab") as log:
            if as_root:
                argv += ["--user", inst.user.name]
                self.process = subprocess.Popen(
                    argv,
                    env=service_env(env),
                    cwd="/",
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            else:
                self.process = spawn_as_service_user(
                    argv, user=inst.user, env=env, stdout=log, stderr=subprocess.STDOUT
                )
        self.installation.running.append(self)
        self.wait_until_ready()

    def stop(self) -> int | None:
        """SIGTERM, as systemd stops it; the exit status (None if it was not running)."""
        if self.process is None:
            return None
        status = stop_process(self.process)
        self.process = None
        self.installation.running.remove(self)
        return status

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
        self.process = None
        self.installation.running.remove(self)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_mark(self) -> int:
        """A position in the log, for wait_for_log(since=...)."""
        return len(self.log_text())

    def wait_for_log(self, pattern: str, since: int = 0, timeout: float = 10.0) -> re.Match[str]:
        """Wait until a line of the log after *since* matches *pattern* (re.MULTILINE)."""
        regex = re.compile(pattern, re.MULTILINE)
        return wait_until(
            lambda: regex.search(self.log_text()[since:]),
            f"{self.program} logging {pattern!r}",
            timeout,
            proc=self.process,
        )


class Policyd(ServiceDaemon):
    """``postwarden-policyd`` on free loopback ports, or unix sockets in *socket_dir*."""

    module, log_name, program = "postwarden.policyd.main", "policyd.log", "postwarden-policyd"

    def __init__(
        self,
        installation: Installation,
        *,
        tls_level: str = "may",
        socket_dir: Path | None = None,
        options: tuple[str, ...] = (),
    ) -> None:
        super().__init__(installation)
        self.policy_port = free_port()
        self.socketmap_port = free_port()
        self.socket_dir = socket_dir
        self.tls_level = tls_level
        self.options = options  # more command-line options (--workers, --max-connections)

    @property
    def policy_address(self) -> str:
        if self.socket_dir:
            return f"unix:{self.socket_dir / 'policy'}"
        return f"inet:127.0.0.1:{self.policy_port}"

    @property
    def socketmap_address(self) -> str:
        if self.socket_dir:
            return f"unix:{self.socket_dir / 'socketmap'}"
        return f"inet:127.0.0.1:{self.socketmap_port}"

    def arguments(self) -> list[str]:
        return [
            "--policy",
            self.policy_address,
            "--socketmap",
            self.socketmap_address,
            "--tls-security-level",
            self.tls_level,
            *self.options,
        ]

    def worker_pids(self) -> list[int]:
        """The pids of the daemon's worker processes (its children)."""
        assert self.process is not None
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return sorted(int(pid) for pid in children.read_text().split())

    def wait_until_listening(self) -> None:
        if self.socket_dir:
            for name in ("policy", "socketmap"):
                wait_for_unix_socket(self.socket_dir / name, timeout=15, proc=self.process)
        else:
            for port in (self.policy_port, self.socketmap_port):
                wait_for_port("127.0.0.1", port, timeout=15, proc=self.process)

    def wire(self, postfix: PostfixInstance, *, listener: str = "mx") -> None:
        """``postwarden postfix-config --apply`` for *postfix*'s port-25 listener, reload."""
        self.installation.postfix_config_dir = postfix.config_dir
        self.installation.cli(
            "postfix-config",
            "--apply",
            "--postfix-config-dir",
            str(postfix.config_dir),
            "--service",
            f"127.0.0.1:{postfix.ports[listener]}/inet",
            "--policy",
            self.policy_address,
            "--socketmap",
            self.socketmap_address,
            "--components",
            "policyd",
            "--handback-listen",
            f"127.0.0.1:{postfix.handback_port}",
        )
        _settle(postfix)
        postfix.reload()


class MilterDaemon(ServiceDaemon):
    """``postwarden-milter`` on a free loopback port, or on the unix socket *socket_path*."""

    module, log_name, program = "postwarden.milter.main", "milter.log", "postwarden-milter"

    def __init__(
        self,
        installation: Installation,
        policyd: Policyd | None = None,
        *,
        socket_path: Path | None = None,
    ) -> None:
        super().__init__(installation)
        self.port = free_port()
        self.policyd = policyd  # asked which recipients Postfix did not know
        self.socket_path = socket_path

    @property
    def address(self) -> str:
        if self.socket_path:
            return f"unix:{self.socket_path}"
        return f"inet:127.0.0.1:{self.port}"

    def arguments(self) -> list[str]:
        policyd = self.policyd.socketmap_address if self.policyd else "none"
        return ["--socket", self.address, "--policyd-socketmap", policyd]

    def wait_until_listening(self) -> None:
        if self.socket_path:
            wait_for_unix_socket(self.socket_path, timeout=15, proc=self.process)
        else:
            wait_for_port("127.0.0.1", self.port, timeout=15, proc=self.process)


def wire(postfix: PostfixInstance, policyd: Policyd | None, milter: MilterDaemon) -> None:
    """``postwarden postfix-config --apply`` for both listeners (policyd if given)."""
    daemons = ["--milter", milter.address]
    if policyd is not None:
        daemons += ["--policy", policyd.policy_address, "--socketmap", policyd.socketmap_address]
    milter.installation.postfix_config_dir = postfix.config_dir
    milter.installation.cli(
        "postfix-config",
        "--apply",
        "--postfix-config-dir",
        str(postfix.config_dir),
        "--service",
        f"127.0.0.1:{postfix.mx_port}/inet",
        "--submission-service",
        f"127.0.0.1:{postfix.submission_port}/inet",
        "--components",
        "milter" if policyd is None else "policyd,milter",
        "--handback-listen",
        f"127.0.0.1:{postfix.handback_port}",
        *daemons,
    )
    _settle(postfix)
    postfix.reload()


def _settle(postfix: PostfixInstance) -> None:
    """Backdate main.cf/master.cf: Postfix waits for configuration files younger than 2 s."""
    for name in ("main.cf", "master.cf"):
        path = postfix.config_dir / name
        old = path.stat().st_mtime - 60
        os.utime(path, (old, old))
