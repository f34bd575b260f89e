"""A private PostgreSQL cluster on loopback for the fleet tests.

Description:
    :class:`PostgresCluster` runs Debian's PostgreSQL server binaries (the ``postgresql``
    package; ``make deps`` installs it) as the ``postgres`` user: ``initdb`` into a fresh
    directory under /tmp, then ``pg_ctl start`` listening on 127.0.0.1 and a free port, with
    its Unix socket in that directory. Nothing of the machine's own clusters is used. It
    creates the role ``postwarden`` (password authentication over TCP, as a node would
    connect) and a role ``intruder`` that may connect but owns nothing, to show what the
    grants keep from other roles. :meth:`PostgresCluster.new_database` makes a fresh
    database owned by ``postwarden`` per test; :meth:`stop` and :meth:`start` take the
    server away and bring it back (the fleet's "database down" tests).

    Durability is relaxed (``fsync=off``): the tests stop the server cleanly and never
    crash the machine.

Errors:
    :class:`PostgresError` with the command's output and the server log.

Security:
    Listens on 127.0.0.1 only; TCP connections need a password (scram-sha-256); local
    socket connections are for the postgres user (peer).
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from .service_user import CLEAN_PATH, free_port, wait_for_port

PASSWORD = "pw-fleet-secret"  # a throw-away cluster's role password
INTRUDER_PASSWORD = "pw-intruder-secret"


class PostgresError(RuntimeError):
    """A PostgreSQL command failed."""


def server_bindir() -> Path:
    """Debian's newest installed PostgreSQL server binaries."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4])
    )
    if not found:
        raise PostgresError("no PostgreSQL server installed (Debian package postgresql)")
    return Path(found[-1]).parent


class PostgresCluster:
    """A throw-away cluster under /tmp, run as the postgres user."""

    def __init__(self) -> None:
        self.bindir = server_bindir()
        self.base = Path(tempfile.mkdtemp(prefix="pw-pg-", dir="/tmp"))
        self.base.chmod(0o755)
        self.data = self.base / "data"
        self.log = self.base / "server.log"
        self.port = free_port()
        self.user = pwd.getpwnam("postgres")
        os.chown(self.base, self.user.pw_uid, self.user.pw_gid)
        self._numbers = itertools.count(1)
        self.running = False

    def _as_postgres(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            list(argv),
            user=self.user.pw_uid,
            group=self.user.pw_gid,
            extra_groups=[],
            cwd=self.base,
            env={"PATH": CLEAN_PATH, "LANG": "C.UTF-8", "HOME": str(self.base)},
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if check and done.returncode != 0:
            raise PostgresError(
                f"{' '.join(argv)}: exit {done.returncode}\n{done.stdout}{done.stderr}"
                f"\n{self.log.read_text(errors='replace') if self.log.exists() else ''}"
            )
        return done

    def init(self) -> None:
        self._as_postgres(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth-local=peer",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--no-instructions",
        )
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                f"listen_addresses = '127.0.0.1'\nport = {self.port}\n"
                f"unix_socket_directories = '{self.base}'\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                "max_connections = 200\nshared_buffers = 32MB\n"
            )

    def start(self) -> None:
        self._as_postgres(
            str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "start"
        )
        wait_for_port("127.0.0.1", self.port, timeout=30)
        self.running = True

    def stop(self) -> None:
        if self.running:
            self._as_postgres(
                str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"
            )
            self.running = False

    def sql(self, statement: str, database: str = "postgres") -> str:
        """Run *statement* as the superuser (over the Unix socket); its output."""
        return self._as_postgres(
            "psql",
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            str(self.base),
            "-p",
            str(self.port),
            "-d",
            database,
            "-c",
            statement,
        ).stdout.strip()

    def create_roles(self) -> None:
        self.sql(f"CREATE ROLE postwarden LOGIN PASSWORD '{PASSWORD}'")
        self.sql(f"CREATE ROLE intruder LOGIN PASSWORD '{INTRUDER_PASSWORD}'")

    def new_database(self) -> str:
        """A fresh database owned by postwarden, closed to other roles; its name."""
        name = f"fleet{next(self._numbers)}"
        self.sql(f"CREATE DATABASE {name} OWNER postwarden")
        self.sql(f"REVOKE ALL ON DATABASE {name} FROM PUBLIC")
        self.sql(f"GRANT CONNECT ON DATABASE {name} TO intruder")
        return name

    def drop_database(self, name: str) -> None:
        if self.running:
            self.sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def url(self, database: str, role: str = "postwarden", password: str = PASSWORD) -> str:
        return f"postgresql://{role}:{password}@127.0.0.1:{self.port}/{database}"

    def close(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.base, ignore_errors=True)
