"""Outgoing TLS policies as Postfix ``smtp_tls_policy_maps`` answers.

Description:
    Every hosted domain's outgoing policies are merged into one table keyed the way Postfix's
    SMTP client asks (src/smtp/smtp_tls_policy.c): the next-hop domain, then ``.parent``
    forms it tries on its own, or a verbatim ``[host]:port`` next hop. A partner written
    ``partner.example`` answers for exactly that domain; ``.partner.example`` for its
    subdomains, mirroring Postfix's own table syntax. Routes with ``tls: required`` add an
    ``encrypt`` answer for their next hop.

    Levels: "trusted CA" and "hostname match" both need certificate verification, which
    Postfix only offers together with a name check, so either gives ``verify match=hostname``
    (a CA-signed certificate naming the MX host); TLS alone gives ``encrypt``. Where several
    policies name one partner, the strictest wins (``encrypt`` < ``verify``), and no answer is
    weaker than the installation's ``smtp_tls_security_level``:

    ============== ==================================================================
    global level   effect on an answer
    ============== ==================================================================
    none, may      none: the policy's level is stronger
    encrypt        ``encrypt`` stays, ``verify`` stays
    verify         every answer becomes at least ``verify``
    secure         no answer (NOTFOUND): the global ``secure`` is stronger than ours
    dane-only,     no answer: the global level authenticates in a way we cannot combine
    fingerprint
    dane           the policy's level (mandatory TLS), replacing opportunistic DANE
    ============== ==================================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from postwarden.settings.model import TlsPolicy
from postwarden.settings.snapshot import Snapshot

_STRENGTH = {"none": 0, "may": 1, "encrypt": 2, "verify": 3, "secure": 4}
_ANSWER = {"encrypt": "encrypt", "verify": "verify match=hostname", "secure": "secure"}
_DEFER_TO_GLOBAL = {"secure", "dane-only", "fingerprint"}


def policy_level(policy: TlsPolicy) -> str:
    return "verify" if policy.trusted_ca or policy.hostname_match else "encrypt"


def _stronger(a: str, b: str) -> str:
    return a if _STRENGTH[a] >= _STRENGTH[b] else b


@dataclass(frozen=True)
class TlsTable:
    """The merged answers: lookup key → smtp_tls_policy_maps result."""

    answers: Mapping[str, str] = field(default_factory=dict)
    sources: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def lookup(self, key: str) -> str | None:
        return self.answers.get(key.lower())


def compile_tls_table(snapshot: Snapshot, global_level: str = "may") -> TlsTable:
    """Merge every block's outgoing policies and required-TLS routes into one table."""
    levels: dict[str, str] = {}
    sources: dict[str, list[str]] = {}
    for owner, policy in snapshot.settings.outgoing_tls_policies():
        for partner in policy.partners:
            levels[partner] = _stronger(levels.get(partner, "none"), policy_level(policy))
            sources.setdefault(partner, []).append(f"{owner}: {policy.title}")
    for name, route in snapshot.settings.routes.items():
        if route.tls == "required":
            key = route.nexthop
            levels[key] = _stronger(levels.get(key, "none"), "encrypt")
            sources.setdefault(key, []).append(f"route {name}")
    answers: dict[str, str] = {}
    for key, level in levels.items():
        if global_level in _DEFER_TO_GLOBAL:
            continue
        floor = global_level if global_level in _STRENGTH else "none"
        answers[key] = _ANSWER[_stronger(level, floor)]
    return TlsTable(answers, {k: tuple(v) for k, v in sources.items() if k in answers})
