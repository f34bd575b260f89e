"""policyd while 30,000 distinct unknown recipients are admitted for routing within a minute.

A domain routes unknown recipients (an inbound rule with ``unknown_recipients``), so every
policy answer for it admits that recipient for Postfix's ``rcptok`` lookup. The load sends
each request to another of 30,000 addresses, from 8 connections; requests/s must stay
where they are without admissions (issue #9: above 15,000/s; the old table rebuilt a dict
on every request above 10,000 entries and fell to about 800/s).
"""

from __future__ import annotations

from postwarden.settings.load import load_text
from tests.bench.bench_policyd import _report, _requests, running_policyd

RECIPIENTS = 30_000
SETTINGS = """\
version: 1
primary_domain: example.com
domains:
  example.com:
    inbound_routing:
      - {name: elsewhere, route: old, condition: external, unknown_recipients: true}
routes:
  old: {host: "[192.0.2.10]"}
"""


def main() -> None:
    probes = [f"198.51.100.{i % 250 + 1}" for i in range(RECIPIENTS)]
    requests = _requests(probes)  # recipient bob{i}@example.com: 30,000 distinct
    settings = load_text(SETTINGS, "bench").settings
    with running_policyd(settings) as (daemon, port):
        print(f"{RECIPIENTS:,} distinct unknown recipients admitted for routing:")
        _report("  8 connections, closed loop", daemon.pid, requests, port, None)
