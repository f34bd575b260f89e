"""The console's list pages at the settings' limit: 10,000 entries, paged, deleted in bulk."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import ServiceUser
from tests.integration.daemons import Installation
from tests.integration.webconsole import WebConsole, console_installation, csrf_of, login


@pytest.fixture
def console(traversable_tmp: Path, service_user: ServiceUser) -> Iterator[WebConsole]:
    inst = console_installation(Installation(traversable_tmp, service_user, primary="example.com"))
    web = WebConsole(inst).start()
    web.add_user("alice")
    try:
        yield web
    finally:
        web.stop()


def _rows(html: str) -> list[str]:
    return re.findall(r'name="entry" value="([^"]+)"', html)


def test_ten_thousand_entries_are_paged_and_deleted_in_bulk(console: WebConsole) -> None:
    entries = [f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}" for i in range(1, 10_001)]
    console.installation.cli("block", "add", "-", stdin="\n".join(entries))
    with console.client() as client:
        login(client, "alice")
        started = time.perf_counter()
        first = client.get("/d/example.com/blocked")
        elapsed = time.perf_counter() - started
        print(f"\nblocked list page 1 of 100 with 10,000 entries: {elapsed * 1000:.0f} ms")
        assert "10000 blocked entries" in first.text and "page 1 of 100" in first.text
        assert _rows(first.text) == entries[:100]
        last = client.get("/d/example.com/blocked?page=100")
        assert _rows(last.text) == entries[9_900:] and 'rel="next"' not in last.text
        beyond = client.get("/d/example.com/blocked?page=999")
        assert _rows(beyond.text) == entries[9_900:]
        token = csrf_of(client, "/d/example.com/blocked")
        confirm = client.post(
            "/d/example.com/blocked/confirm", data={"csrf": token, "entry": entries[:100]}
        )
        assert "Delete 100 blocked entries?" in confirm.text
        assert len(console.installation.cli_json("block", "list")["entries"]) == 10_000
        done = client.post(
            "/d/example.com/blocked/delete", data={"csrf": token, "entry": entries[:100]}
        )
        assert "example.com blocked_ips: 100 deleted" in done.text
        assert "9900 blocked entries" in done.text
    assert len(console.installation.cli_json("block", "list")["entries"]) == 9_900
