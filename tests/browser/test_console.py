"""The web console in headless Chromium, on a whole installation: a private Postfix wired to
postwarden-policyd, a loopback DNS server (dnsmasq) for DKIM, postwarden-web — all as the
service user — and a browser that logs in, adds and deletes entries, sees a validation
error, sorts by recent blocks after real refusals, creates a DKIM key and begins
authentication, adds a TLS policy, is kept out of another customer's domain, and takes a
screenshot of every page at desktop and phone width.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import DESKTOP, PHONE, screenshot
from tests.harness import PostfixInstance, Reply, ServiceUser, send
from tests.harness.fixtures import make_traversable_dir
from tests.integration.daemons import Installation, Policyd
from tests.integration.dns import DnsServer, running_dns_server
from tests.integration.webconsole import PASSWORD, WebConsole, console_installation

pytestmark = pytest.mark.postfix

SETTINGS = """\
version: 1
primary_domain: example.com
domains:
  example.com:
    blocked_ips:
      - {ip: 198.51.100.0/24, note: old spam run}
  sales.example.com:
  customer.example:
    allowed_ips: [192.0.2.200]
routes:
  archive: {host: "[192.0.2.25]", port: 2525}
"""


@dataclass
class Stack:
    installation: Installation
    postfix: PostfixInstance
    dns: DnsServer
    console: WebConsole


@pytest.fixture(scope="module")
def stack(service_user: ServiceUser) -> Iterator[Stack]:
    base = make_traversable_dir("pw-browser-")
    installation = Installation(base, service_user, primary="example.com")
    installation.write(SETTINGS)
    console_installation(installation)
    policyd = Policyd(installation)
    postfix = PostfixInstance(hosted={"example.com": ("bob",), "customer.example": ("carol",)})
    try:
        policyd.start()
        postfix.start()
        policyd.wire(postfix)
        with running_dns_server(("example.com",)) as dns:
            console = WebConsole(installation, dkim_nameserver=dns.address).start()
            try:
                console.add_user("alice")
                console.add_user("sam", "domain-admin", "sales.example.com")
                yield Stack(installation, postfix, dns, console)
            finally:
                console.stop()
    finally:
        postfix.close()
        policyd.stop()
        shutil.rmtree(base, ignore_errors=True)


def log_in(page: Page, stack: Stack, name: str = "alice") -> None:
    page.goto(stack.console.url + "/")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Hosted domains")).to_be_visible()


def entries(page: Page) -> list[str]:
    return [c.strip() for c in page.locator("table.entries td[data-label=Entry]").all_inner_texts()]


def test_log_in_and_add_a_batch_of_blocked_ips_with_a_note(page: Page, stack: Stack) -> None:
    log_in(page, stack)
    page.goto(stack.console.url + "/d/example.com/blocked")
    page.get_by_label(re.compile("^Addresses, networks")).fill(
        "203.0.113.7\n203.0.113.8, 2001:db8:bad::/48"
    )
    page.get_by_label("Note (kept with each entry)").fill("spam run <b>42</b>")
    page.get_by_role("button", name="Add", exact=True).click()
    expect(page.get_by_role("status").first).to_contain_text("example.com blocked_ips: 3 added")
    assert entries(page) == ["198.51.100.0/24", "203.0.113.7", "203.0.113.8", "2001:db8:bad::/48"]
    expect(page.locator("tr", has_text="203.0.113.8")).to_contain_text("spam run <b>42</b>")
    listed = stack.installation.cli_json("block", "list")["entries"]
    assert {e["entry"]: e["note"] for e in listed}["203.0.113.8"] == "spam run <b>42</b>"


def test_a_bad_entry_is_named_and_nothing_is_saved(page: Page, stack: Stack) -> None:
    log_in(page, stack)
    before = stack.installation.settings.read_bytes()
    page.goto(stack.console.url + "/d/example.com/blocked")
    field = page.get_by_label(re.compile("^Addresses, networks"))
    field.fill("192.0.2.1 300.1.1.1")
    page.get_by_role("button", name="Add", exact=True).click()
    expect(page.get_by_role("alert")).to_contain_text(
        "'300.1.1.1' is not an IP address, CIDR network or first-last range; nothing was changed"
    )
    expect(field).to_have_value("192.0.2.1 300.1.1.1")  # the input is kept to correct it
    assert stack.installation.settings.read_bytes() == before


def test_sort_by_recent_blocks_after_real_refusals_then_delete(page: Page, stack: Stack) -> None:
    log_in(page, stack)
    page.goto(stack.console.url + "/d/example.com/blocked")
    page.get_by_label(re.compile("^Addresses, networks")).fill("192.0.2.50 192.0.2.51")
    page.get_by_role("button", name="Add", exact=True).click()
    expect(page.get_by_role("status").first).to_contain_text("2 added")
    saved = time.monotonic()
    for client in ("192.0.2.50", "198.51.100.9", "192.0.2.51"):  # the newest last
        reply = rcpt(stack, client)
        while reply.code != 554 and time.monotonic() < saved + 2.0:  # enforced within 2 s
            time.sleep(0.2)
            reply = rcpt(stack, client)
        assert reply.code == 554, reply
        time.sleep(1.1)  # distinct seconds of the block history
    page.goto(stack.console.url + "/d/example.com/blocked")
    page.get_by_role("link", name="most recent blocks first").click()
    expect(page).to_have_url(re.compile(r"sort=recent"))
    deadline = time.monotonic() + 15  # policyd records blocks from a thread of its own
    while entries(page)[:3] != ["192.0.2.51", "198.51.100.0/24", "192.0.2.50"]:
        assert time.monotonic() < deadline, entries(page)
        time.sleep(0.5)
        page.reload()
    expect(page.locator("tr", has_text="192.0.2.51")).to_contain_text("1")
    screenshot(page, "blocked-sorted", "desktop")
    page.get_by_label("select 192.0.2.50").check()
    page.get_by_role("button", name="Delete selected…").click()
    expect(page.get_by_role("heading", name="Delete 1 blocked entry?")).to_be_visible()
    screenshot(page, "blocked-confirm-delete", "desktop")
    assert "192.0.2.50" in entries_of(stack)  # nothing deleted before the confirmation
    page.get_by_role("button", name="Delete", exact=True).click()
    expect(page.get_by_role("status").first).to_contain_text("1 deleted")
    assert "192.0.2.50" not in entries_of(stack)


def rcpt(stack: Stack, client: str, sender: str = "a@elsewhere.example") -> Reply:
    """Postfix's answer at RCPT for mail from *client* to bob@example.com."""
    result = send(stack.postfix.mx_port, sender, ["bob@example.com"], client_ip=client)
    return result.rcpts["bob@example.com"]


def entries_of(stack: Stack) -> list[str]:
    return [e["entry"] for e in stack.installation.cli_json("block", "list")["entries"]]


def test_create_a_dkim_key_and_begin_authentication(page: Page, stack: Stack) -> None:
    log_in(page, stack)
    page.goto(stack.console.url + "/d/example.com/dkim")
    page.get_by_label("Key").select_option("rsa-2048")
    page.get_by_role("button", name="Create").click()
    expect(page.get_by_role("status").first).to_contain_text(
        "Created a 2048-bit RSA key for example.com, selector postwarden (pending)"
    )
    host = page.get_by_label("Host name").input_value()
    assert host == "postwarden._domainkey.example.com"
    strings = [
        page.locator(f"#s-{i}-postwarden").input_value()
        for i in range(1, page.locator("input[id^=s-][id$=-postwarden]").count() + 1)
    ]
    assert strings[0].startswith("v=DKIM1; k=rsa; p=") and all(len(s) <= 255 for s in strings)
    expect(page.locator("button.copy").first).to_be_visible()  # the script ran
    assert "PRIVATE KEY" not in page.content()
    page.get_by_role("button", name="Begin authentication").click()
    expect(page.get_by_role("status").first).to_contain_text("Not authenticated:")
    expect(page.get_by_role("status").first).to_contain_text("72 hours")
    # The key is published, but for TLS reports only (s=tlsrpt): receivers reject it for
    # mail, so the console must not call the key authenticated.
    reports_only = ["v=DKIM1; s=tlsrpt; ", strings[0].removeprefix("v=DKIM1; "), *strings[1:]]
    stack.dns.set_txt(host, reports_only)
    page.get_by_role("button", name="Begin authentication").click()
    expect(page.get_by_role("status").first).to_contain_text(
        "Not authenticated: a signature made with the key does not verify."
    )
    assert stack.installation.cli_json("dkim", "show")["signing_selector"] != "postwarden"
    stack.dns.set_txt(host, strings)
    page.get_by_role("button", name="Begin authentication").click()
    expect(page.get_by_role("status").first).to_contain_text(
        "Authenticated: example.com now signs with selector postwarden."
    )
    shown = stack.installation.cli_json("dkim", "show")
    assert shown["signing_selector"] == "postwarden"
    newest = stack.installation.cli_json("history")[0]
    assert newest["user"] == "alice" and "is now the active key" in newest["diff"]


def test_add_a_tls_policy(page: Page, stack: Stack) -> None:
    log_in(page, stack)
    page.goto(stack.console.url + "/d/example.com/tls")
    page.get_by_label("Title").fill("bank")
    page.get_by_label("Incoming: mail from the partners is refused without TLS").check()
    page.get_by_label(re.compile("^Partner domains")).fill("bank.example, .bank.example")
    page.get_by_role("button", name="Add", exact=True).click()
    expect(page.get_by_role("status").first).to_contain_text("TLS policy 'bank' added")
    expect(page.locator("tr", has_text="bank")).to_contain_text("TLS required from them")
    saved = time.monotonic()
    reply = rcpt(stack, "192.0.2.99", "a@bank.example")
    while reply.code != 530 and time.monotonic() < saved + 2.0:  # enforced within 2 s
        time.sleep(0.2)
        reply = rcpt(stack, "192.0.2.99", "a@bank.example")
    assert reply.code == 530, reply


def test_gateway_spam_rule_route_and_routing_forms(page: Page, stack: Stack) -> None:
    log_in(page, stack)
    url = stack.console.url
    page.goto(url + "/d/customer.example/gateway")
    page.get_by_label(re.compile("^Use an inbound gateway")).check()
    page.get_by_label(re.compile("^Receive external mail only from the gateway")).check()
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("alert")).to_contain_text("no gateway IPs are listed")
    page.get_by_label(re.compile("^Gateway addresses")).fill("192.0.2.30, 192.0.2.31")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status").first).to_contain_text("customer.example: inbound gateway")
    gateway = stack.installation.cli_json("gateway", "show", "--domain", "customer.example")
    assert gateway["enabled"] and gateway["ips"] == ["192.0.2.30", "192.0.2.31"]

    page.goto(url + "/d/customer.example/spam")
    page.get_by_label("Name", exact=True).fill("pills")
    page.get_by_label("RE2 pattern").fill("(cheap")
    page.get_by_role("button", name="Add").click()
    expect(page.get_by_role("alert")).to_contain_text(
        "pattern '(cheap' is not a valid RE2 pattern: missing )"
    )
    page.get_by_label("RE2 pattern").fill(r"(?i)cheap\s+pills")
    page.get_by_role("button", name="Add").click()
    expect(page.locator("tr", has_text="pills")).to_contain_text("subject")

    page.goto(url + "/routes")
    page.get_by_label("Name", exact=True).fill("dlp")
    page.get_by_label("Host name, or [address]").fill("[192.0.2.26]")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("tr", has_text="dlp")).to_contain_text("[192.0.2.26]:25")

    page.goto(url + "/d/customer.example/routing")
    page.locator("#out-name").fill("copy-out")
    page.locator("#out-route").select_option("dlp")
    page.locator("#out-action").select_option("send-additionally")
    page.locator("form", has=page.locator("#out-name")).get_by_role("button", name="Add").click()
    expect(page.get_by_role("status").first).to_contain_text(
        "customer.example: outbound rule 'copy-out' added"
    )
    page.goto(url + "/routes")
    expect(page.locator("tr", has_text="dlp")).to_contain_text("customer.example outbound rule")


def test_give_a_subdomain_its_own_settings(page: Page, stack: Stack) -> None:
    log_in(page, stack)
    page.goto(stack.console.url + "/d/sales.example.com/blocked")
    expect(page.locator(".inherited")).to_contain_text("uses those of example.com")
    expect(page.locator("h2").nth(1)).to_contain_text("inherited from example.com")
    screenshot(page, "blocked-inherited", "desktop")
    page.get_by_role("button", name="Give it its own settings").click()
    expect(page.get_by_role("status").first).to_contain_text(
        "sales.example.com now has its own settings, copied from example.com"
    )
    expect(page.locator(".inherited")).to_have_count(0)


def test_a_domain_administrator_cannot_reach_another_domain(page: Page, stack: Stack) -> None:
    log_in(page, stack, "sam")
    options = (
        page.locator("#domain-switch option").all_inner_texts()
        if page.locator("#domain-switch").count()
        else []
    )
    assert "customer.example" not in page.content() and "customer.example" not in options
    for path in ("/d/customer.example/blocked", "/d/customer.example/dkim", "/d/example.com/"):
        response = page.goto(stack.console.url + path)
        assert response is not None and response.status == 404, path
        expect(page.get_by_role("alert")).to_contain_text("is not a hosted domain")
    screenshot(page, "refused-other-domain", "desktop")
    page.goto(stack.console.url + "/routes")
    expect(page.get_by_role("button", name="Save")).to_have_count(0)  # read-only


PAGES = [
    ("domains", "/"),
    ("overview", "/d/example.com/"),
    ("allowed", "/d/example.com/allowed"),
    ("blocked", "/d/example.com/blocked"),
    ("gateway", "/d/example.com/gateway"),
    ("spam", "/d/example.com/spam"),
    ("routing", "/d/example.com/routing"),
    ("dkim", "/d/example.com/dkim"),
    ("tls", "/d/example.com/tls"),
    ("routes", "/routes"),
    ("history", "/history"),
    ("status", "/status"),
    ("subdomain", "/d/customer.example/"),
    ("not-found", "/d/nowhere.example/"),
]


@pytest.mark.parametrize(("size", "options"), [("desktop", DESKTOP), ("phone", PHONE)])
def test_every_page_at_desktop_and_phone_width(
    browser: Browser, stack: Stack, size: str, options: dict[str, object]
) -> None:
    context = browser.new_context(**options)
    try:
        page = context.new_page()
        page.goto(stack.console.url + "/login")
        screenshot(page, "login", size)
        log_in(page, stack)
        for name, path in PAGES:
            page.goto(stack.console.url + path)
            path_shot = screenshot(page, name, size)
            assert path_shot.stat().st_size > 5000, name
            overflow = page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, f"{name} scrolls sideways by {overflow}px at {size} width"
    finally:
        context.close()


def test_screenshots_are_where_the_readme_says() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert "test-output/screenshots/" in readme
