"""The web console's security, against postwarden-web running as the service user.

Sessions (cookie flags, rotation, lockout), CSRF, a domain administrator's reach, escaping,
the Content-Security-Policy, and an edit made in the console enforced by policyd and named
in ``postwarden history``.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.harness import ServiceUser, TestCA
from tests.integration.daemons import Installation, Policyd
from tests.integration.webconsole import (
    PASSWORD,
    WebConsole,
    console_installation,
    csrf_of,
    login,
)

SETTINGS = """\
version: 1
primary_domain: example.com
domains:
  example.com:
    blocked_ips: [203.0.113.0/24]
  sales.example.com:
  eu.sales.example.com:
  customer.example:
    blocked_ips: [198.51.100.0/24]
routes:
  archive: {host: "[192.0.2.25]"}
"""


@pytest.fixture
def inst(traversable_tmp: Path, service_user: ServiceUser) -> Installation:
    installation = Installation(traversable_tmp, service_user, primary="example.com")
    installation.write(SETTINGS)
    return console_installation(installation)


@pytest.fixture
def console(inst: Installation) -> Iterator[WebConsole]:
    web = WebConsole(inst).start()
    web.add_user("alice")
    web.add_user("sam", "domain-admin", "sales.example.com")
    try:
        yield web
    finally:
        web.stop()


def _cookie_header(response: httpx.Response) -> str:
    for candidate in [response, *response.history]:
        for value in candidate.headers.get_list("set-cookie"):
            if "session=" in value:
                return value
    raise AssertionError("no session cookie set")


def test_session_cookie_flags_and_rotation_at_login(console: WebConsole) -> None:
    with console.client() as client:
        first = login(client, "alice")
        assert first.status_code == 200 and "Hosted domains" in first.text
        header = _cookie_header(first)
        assert header.startswith("pw_session=")
        flags = {f.strip().lower() for f in header.split(";")[1:]}
        assert {"httponly", "samesite=strict", "path=/"} <= flags
        assert "secure" not in flags  # plain HTTP on loopback: a Secure cookie would be lost
        old = client.cookies.get("pw_session")
        second = login(client, "alice")
        new = client.cookies.get("pw_session")
        assert second.status_code == 200 and new and new != old
    with httpx.Client(base_url=console.url, cookies={"pw_session": old or ""}) as stale:
        assert stale.get("/", follow_redirects=False).headers["location"].startswith("/login")


def test_secure_cookie_over_tls_and_behind_a_trusted_proxy(
    inst: Installation, test_ca: TestCA
) -> None:
    issued = test_ca.issue("web", ("console.test",), ("127.0.0.1",))
    for name in ("cert", "key"):
        target = inst.base / f"web.{name}"
        shutil.copy(getattr(issued, name), target)
        os.chown(target, inst.user.uid, inst.user.gid)
    cert = type(issued)(inst.base / "web.cert", inst.base / "web.key")
    tls = WebConsole(inst, cert=cert).start()
    try:
        tls.add_user("alice")
        with tls.client() as client:
            header = _cookie_header(login(client, "alice"))
        assert header.startswith("__Host-pw_session=")
        assert "secure" in header.lower()
    finally:
        tls.stop()
    proxied = WebConsole(inst, trusted_proxy="127.0.0.1").start()
    try:
        # As nginx forwards a browser's HTTPS request; the client here speaks plain HTTP, so
        # it hands the (Secure) login cookie back itself.
        https = {"X-Forwarded-Proto": "https"}
        with httpx.Client(base_url=proxied.url, headers=https) as client:
            form = client.get("/login")
            token = re.search(r'name="login_token" value="([^"]+)"', form.text)
            assert token and "secure" in form.headers["set-cookie"].lower()
            done = client.post(
                "/login",
                data={"login_token": token.group(1), "name": "alice", "password": PASSWORD},
                headers={"Cookie": f"pw_login={token.group(1)}"},
            )
        header = _cookie_header(done)
        assert header.startswith("__Host-pw_session=") and "secure" in header.lower()
    finally:
        proxied.stop()


def test_missing_or_wrong_csrf_token_is_refused_and_changes_nothing(
    console: WebConsole, inst: Installation
) -> None:
    before = inst.settings.read_bytes()
    with console.client() as client:
        login(client, "alice")
        token = csrf_of(client, "/d/example.com/blocked")
        for data in ({}, {"csrf": "x" * len(token)}, {"csrf": ""}):
            refused = client.post(
                "/d/example.com/blocked/add", data={**data, "entries": "192.0.2.1"}
            )
            assert refused.status_code == 403
            assert "security token is missing or wrong" in refused.text
        assert inst.settings.read_bytes() == before
        done = client.post(
            "/d/example.com/blocked/add", data={"csrf": token, "entries": "192.0.2.1"}
        )
        assert done.status_code == 200 and "1 added" in done.text
    assert inst.settings.read_bytes() != before


def test_a_domain_administrator_reaches_only_its_domains(
    console: WebConsole, inst: Installation
) -> None:
    before = inst.settings.read_bytes()
    with console.client() as client:
        login(client, "sam")
        home = client.get("/")
        assert "sales.example.com" in home.text and "eu.sales.example.com" in home.text
        assert "customer.example" not in home.text
        token = csrf_of(client, "/d/sales.example.com/blocked")
        for path in ("/d/customer.example/blocked", "/d/example.com/", "/d/customer.example/dkim"):
            assert client.get(path).status_code == 404, path
        crafted = client.post(
            "/d/customer.example/blocked/delete",
            data={"csrf": token, "entry": "198.51.100.0/24"},
        )
        assert crafted.status_code == 404
        route = client.post(
            "/routes/add",
            data={"csrf": token, "name": "evil", "host": "[192.0.2.66]", "port": "25"},
        )
        assert route.status_code == 403 and "server administrator" in route.text
        routes = client.get("/routes")
        assert "archive" in routes.text and 'action="/routes/add"' not in routes.text
        assert inst.settings.read_bytes() == before
        own = client.post(
            "/d/eu.sales.example.com/blocked/add", data={"csrf": token, "entries": "192.0.2.9"}
        )
        assert own.status_code == 200
        assert "now has its own settings, copied from example.com" in own.text


def test_a_note_is_shown_escaped(console: WebConsole) -> None:
    with console.client() as client:
        login(client, "alice")
        token = csrf_of(client, "/d/example.com/blocked")
        note = "<script>alert('x')</script>"
        client.post(
            "/d/example.com/blocked/add",
            data={"csrf": token, "entries": "192.0.2.5", "note": note},
        )
        page = client.get("/d/example.com/blocked")
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page.text
    assert "<script>alert" not in page.text


def test_ten_wrong_passwords_lock_the_account(console: WebConsole, inst: Installation) -> None:
    with console.client() as client:
        for _ in range(10):
            wrong = login(client, "alice", "not the password")
            assert wrong.status_code == 401
        locked = login(client, "alice", PASSWORD)
        assert locked.status_code == 401 and "locked for a while" in locked.text
        assert login(client, "sam").status_code == 200  # only that account
    history = inst.cli_json("history", "--limit", "30")
    refusals = [r["diff"] for r in history if "web login refused for 'alice'" in r["diff"]]
    assert len(refusals) == 11
    assert any("locked for 15 min" in r for r in refusals)
    inst.cli("web-user", "passwd", "alice", "--password-file", "-", stdin=PASSWORD)
    with console.client() as client:
        assert login(client, "alice").status_code == 200


def test_pages_carry_a_csp_without_inline_script(console: WebConsole) -> None:
    with console.client() as client:
        login(client, "alice")
        for path in ("/", "/d/example.com/blocked", "/d/example.com/dkim", "/login", "/status"):
            page = client.get(path)
            csp = page.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "unsafe-inline" not in csp
            assert page.headers["x-content-type-options"] == "nosniff"
            scripts = re.findall(r"<script([^>]*)>", page.text)
            assert scripts and all('src="/static/' in s for s in scripts), path
            assert not re.search(r"\son[a-z]+=", page.text), path


def test_a_console_edit_is_enforced_by_policyd_and_in_the_history(
    console: WebConsole, inst: Installation
) -> None:
    policyd = Policyd(inst)
    policyd.start()
    try:
        request = (
            "request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.77\n"
            "sender=a@elsewhere.example\nrecipient=bob@example.com\n\n"
        )
        assert "DUNNO" in _ask(policyd.policy_port, request)
        with console.client() as client:
            login(client, "alice")
            token = csrf_of(client, "/d/example.com/blocked")
            saved = client.post(
                "/d/example.com/blocked/add",
                data={"csrf": token, "entries": "192.0.2.77", "note": "web"},
            )
            assert saved.status_code == 200
        deadline = time.monotonic() + 2.0  # the console's edit applies within 2 s
        answer = _ask(policyd.policy_port, request)
        while "554" not in answer and time.monotonic() < deadline:
            time.sleep(0.1)
            answer = _ask(policyd.policy_port, request)
        assert "554 5.7.1" in answer
    finally:
        policyd.stop()
    newest = inst.cli_json("history")[0]
    assert newest["user"] == "alice" and newest["source"] == "web"
    assert newest["command"].startswith("web: block add 192.0.2.77")
    assert "+    - ip: 192.0.2.77" in newest["diff"]


def _ask(port: int, request: str) -> str:
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(request.encode())
        return conn.recv(4096).decode()
