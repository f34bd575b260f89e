"""Outgoing TLS policies merged into smtp_tls_policy_maps answers."""

from __future__ import annotations

import pytest

from postwarden.policyd.service import PolicydView, PolicyService, compile_view
from postwarden.settings.load import load_text
from postwarden.settings.snapshot import compile_settings

SETTINGS = """\
version: 1
primary_domain: example.com
domains:
  example.com:
    tls_policies:
      - {title: enc, partners: [a.example, b.example, .sub.example]}
      - {title: inbound only, target: incoming, partners: [c.example]}
  other.example:
    tls_policies:
      - {title: strict, trusted_ca: true, partners: [b.example]}
      - {title: names, hostname_match: true, partners: [d.example]}
  sales.example.com:
routes:
  dlp: {host: dlp.example.net, port: 2525, tls: required}
  archive: {host: "[192.0.2.9]", tls: required}
  plain: {host: relay.example.net, mx_lookup: false}
"""


def view(global_level: str = "may") -> PolicydView:
    loaded = load_text(SETTINGS, "t")
    return compile_view(compile_settings(loaded.settings), global_tls_level=global_level)


@pytest.mark.parametrize(
    ("key", "answer"),
    [
        ("a.example", "encrypt"),
        ("A.Example", "encrypt"),
        ("b.example", "verify match=hostname"),  # strictest of two domains' policies wins
        ("d.example", "verify match=hostname"),
        ("c.example", None),  # incoming policies are not outgoing answers
        (".sub.example", "encrypt"),  # Postfix asks .parent forms itself
        ("sub.example", None),
        ("x.a.example", None),
        ("dlp.example.net:2525", "encrypt"),  # route with TLS required
        ("[192.0.2.9]:25", "encrypt"),
        ("[relay.example.net]:25", None),
    ],
)
def test_answers(key: str, answer: str | None) -> None:
    assert view().tls.lookup(key) == answer


@pytest.mark.parametrize(
    ("level", "a_example", "b_example"),
    [
        ("none", "encrypt", "verify match=hostname"),
        ("encrypt", "encrypt", "verify match=hostname"),
        ("verify", "verify match=hostname", "verify match=hostname"),
        ("secure", None, None),
        ("dane-only", None, None),
        ("dane", "encrypt", "verify match=hostname"),
    ],
)
def test_never_weaker_than_the_global_level(
    level: str, a_example: str | None, b_example: str | None
) -> None:
    table = view(level).tls
    assert (table.lookup("a.example"), table.lookup("b.example")) == (a_example, b_example)


def test_socketmap_replies() -> None:
    service = PolicyService(view, lambda event: None)
    assert service.answer_socketmap(b"tlspolicy b.example") == b"OK verify match=hostname"
    assert service.answer_socketmap(b"tlspolicy nowhere.example") == b"NOTFOUND "
    assert service.answer_socketmap(b"nosuchmap key").startswith(b"PERM ")
    assert service.answer_socketmap(b"tlspolicy").startswith(b"PERM ")
