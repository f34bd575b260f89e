"""postwarden-web as it runs in production, for integration and browser tests.

Description:
    :func:`console_installation` lays the settings directory out the way the README's
    "Web console" section says (``root:postwarden 2770``, the file ``0660``), so the console,
    running as the service user, can replace the file while root's commands keep working.
    :class:`WebConsole` runs ``postwarden-web`` as that user on a free loopback port
    (optionally with TLS, a trusted proxy, or a DNS server for DKIM checks) and creates web
    users through the ``postwarden web-user`` command, as an administrator would.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import httpx

from tests.harness import CertFiles, free_port, spawn_as_service_user, stop_process, wait_for_port
from tests.integration.daemons import Installation

PYTHON = sys.executable
PASSWORD = "correct horse battery staple"


def console_installation(installation: Installation) -> Installation:
    """Let the service user (the console) replace the settings file, as the README says."""
    directory = installation.settings.parent
    gid = installation.user.gid
    os.chown(directory, 0, gid)
    os.chmod(directory, 0o2770)
    for path in directory.iterdir():
        os.chown(path, 0, gid)
        os.chmod(path, 0o660 if path == installation.settings else 0o640)
    return installation


class WebConsole:
    """``postwarden-web`` as the service user on 127.0.0.1 and a free port."""

    def __init__(
        self,
        installation: Installation,
        *,
        cert: CertFiles | None = None,
        trusted_proxy: str = "",
        dkim_nameserver: str | None = None,
    ) -> None:
        self.installation = installation
        self.postfix_config_dir = installation.postfix_config_dir
        self.port = free_port()
        self.cert = cert
        self.trusted_proxy = trusted_proxy
        self.dkim_nameserver = dkim_nameserver
        self.log_path = installation.base / "web.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.cert else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> WebConsole:
        inst = self.installation
        argv = [
            PYTHON,
            "-m",
            "postwarden.web.main",
            *inst.store_options(),
            "--listen",
            f"inet:127.0.0.1:{self.port}",
        ]
        if self.cert:
            argv += ["--tls-cert", str(self.cert.cert), "--tls-key", str(self.cert.key)]
        if self.trusted_proxy:
            argv += ["--trusted-proxy", self.trusted_proxy]
        if self.dkim_nameserver:
            argv += ["--dkim-nameserver", self.dkim_nameserver]
        if self.postfix_config_dir:
            argv += ["--postfix-config-dir", str(self.postfix_config_dir)]
        with open(self.log_path, "ab") as log:
            self.process = spawn_as_service_user(
                argv, user=inst.user, stdout=log, stderr=subprocess.STDOUT
            )
        wait_for_port("127.0.0.1", self.port, timeout=20, proc=self.process)
        return self

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None

    def add_user(self, name: str, role: str = "admin", domain: str | None = None) -> None:
        argv = ["web-user", "add", name, "--role", role, "--password-file", "-"]
        self.installation.cli(*argv, *(["--domain", domain] if domain else []), stdin=PASSWORD)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, verify=False, timeout=30.0, follow_redirects=True)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def login(client: httpx.Client, name: str, password: str = PASSWORD) -> httpx.Response:
    """Log in through the login form (its double-submit token included)."""
    form = client.get("/login")
    token = re.search(r'name="login_token" value="([^"]+)"', form.text)
    assert token, form.text
    return client.post(
        "/login",
        data={"login_token": token.group(1), "name": name, "password": password, "next": "/"},
    )


def csrf_of(client: httpx.Client, path: str) -> str:
    page = client.get(path)
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)
