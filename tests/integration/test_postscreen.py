"""The postscreen cidr export, read back by Postfix's own table code (postmap -q)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.harness import ServiceUser
from tests.integration.daemons import Installation

SETTINGS = """\
version: 1
primary_domain: hosted.test
domains:
  hosted.test:
    allowed_ips: [198.51.100.7, 192.0.2.10-192.0.2.12]
    blocked_ips: [203.0.113.0/24, 198.51.100.0/24, 192.0.2.200]
  other.test:
    blocked_ips: [203.0.113.0/24, 192.0.2.200]
"""


def _lookup(table: Path, address: str) -> str:
    done = subprocess.run(
        ["postmap", "-q", address, f"cidr:{table}"], capture_output=True, text=True, check=False
    )
    return done.stdout.strip() or "(none)"


def test_postscreen_table(traversable_tmp: Path, service_user: ServiceUser) -> None:
    installation = Installation(traversable_tmp, service_user)
    installation.write(SETTINGS)
    table = traversable_tmp / "postscreen.cidr"
    printed = installation.cli(
        "postfix-config", "--components", "policyd", "--postscreen-cidr", str(table)
    ).stdout
    assert f"postscreen_access_list = permit_mynetworks, cidr:{table}" in printed
    assert {
        address: _lookup(table, address)
        for address in (
            "198.51.100.7",  # allowed (and blocked by hosted.test): permit wins
            "192.0.2.11",  # inside an allowed first-last range
            "203.0.113.9",  # blocked by every hosted domain
            "198.51.100.9",  # blocked by hosted.test only: postscreen cannot know the recipient
            "192.0.2.200",  # blocked everywhere
            "192.0.2.99",
        )
    } == {
        "198.51.100.7": "permit",
        "192.0.2.11": "permit",
        "203.0.113.9": "reject",
        "198.51.100.9": "(none)",
        "192.0.2.200": "reject",
        "192.0.2.99": "(none)",
    }
