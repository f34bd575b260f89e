"""The compiled, immutable view of the settings that the daemons and ``explain`` answer from.

Description:
    :func:`compile_settings` turns validated :class:`Settings` into a :class:`Snapshot`: every
    hosted domain is mapped straight to the compiled policy of the block that governs it (its
    own, else its nearest parent's that has one, else the defaults), and every IP list becomes
    an :class:`~postwarden.util.iptable.IpTable`. Answering a request is then dictionary and
    bisection lookups only: no disk, no DNS, no parsing of settings.

    A snapshot is never changed after it is built; a daemon swaps the whole object (one
    reference assignment) when the file changes, so a request sees one consistent version.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from postwarden.settings.model import DomainBlock, Settings, TlsPolicy
from postwarden.settings.schema import IpEntry
from postwarden.util.iptable import IpTable

T = TypeVar("T")


def parent_domains(domain: str) -> Iterable[str]:
    """``a.b.example.com`` → ``b.example.com``, ``example.com``, ``com``."""
    while "." in domain:
        domain = domain.partition(".")[2]
        yield domain


class DomainMatcher(Generic[T]):
    """Match domains against names where ``.example.com`` stands for its subdomains.

    An exact name wins over a subdomain pattern; among patterns the longest wins.
    """

    __slots__ = ("_exact", "_suffixes")

    def __init__(self, items: Iterable[tuple[str, T]]) -> None:
        self._exact: dict[str, T] = {}
        self._suffixes: dict[str, T] = {}
        for name, value in items:
            table = self._suffixes if name.startswith(".") else self._exact
            table.setdefault(name.lstrip("."), value)

    def match(self, domain: str) -> T | None:
        if domain in self._exact:
            return self._exact[domain]
        if self._suffixes:
            for parent in parent_domains(domain):
                if parent in self._suffixes:
                    return self._suffixes[parent]
        return None

    def __bool__(self) -> bool:
        return bool(self._exact or self._suffixes)


def _ip_table(entries: Iterable[IpEntry]) -> IpTable[IpEntry]:
    return IpTable((entry.range, entry) for entry in entries)


@dataclass(frozen=True, eq=False)
class DomainPolicy:
    """One block, compiled. ``owner`` is the domain whose block it is ('' for defaults)."""

    owner: str
    block: DomainBlock
    allowed: IpTable[IpEntry]
    blocked: IpTable[IpEntry]
    gateway: IpTable[IpEntry]
    tls_required_from: DomainMatcher[TlsPolicy]

    @classmethod
    def compile(cls, owner: str, block: DomainBlock) -> DomainPolicy:
        incoming = (
            (partner, policy)
            for policy in block.tls_policies
            if policy.target == "incoming"
            for partner in policy.partners
        )
        return cls(
            owner=owner,
            block=block,
            allowed=_ip_table(block.allowed_ips),
            blocked=_ip_table(block.blocked_ips),
            gateway=_ip_table(block.gateway.ips),
            tls_required_from=DomainMatcher(incoming),
        )


@dataclass(frozen=True, eq=False)
class Snapshot:
    """Everything a daemon needs to answer, for one version of the settings file."""

    settings: Settings
    digest: str = ""
    source: str = ""
    loaded_at: float = field(default_factory=time.time)
    policies: Mapping[str, DomainPolicy] = field(default_factory=dict)
    trusted: IpTable[IpEntry] = field(default_factory=lambda: IpTable(()))

    def is_hosted(self, domain: str) -> bool:
        return domain in self.policies

    def policy_for(self, domain: str) -> DomainPolicy | None:
        """The compiled block governing a hosted *domain*; ``None`` when not hosted."""
        return self.policies.get(domain)

    @property
    def hosted_domains(self) -> list[str]:
        return sorted(self.policies)


def hosted_domains(settings: Settings) -> list[str]:
    """The primary domain first, then the others in file order."""
    others = [d for d in settings.domains if d != settings.primary_domain]
    return [settings.primary_domain, *others]


def governing_domain(settings: Settings, domain: str) -> str | None:
    """The domain whose block governs *domain*: itself or its nearest parent with a block."""
    for candidate in (domain, *parent_domains(domain)):
        if settings.domains.get(candidate) is not None:
            return candidate
    return None


def compile_settings(settings: Settings, *, digest: str = "", source: str = "") -> Snapshot:
    """Compile *settings*; each block is compiled once however many domains share it."""
    compiled: dict[str, DomainPolicy] = {}
    policies: dict[str, DomainPolicy] = {}
    for domain in hosted_domains(settings):
        owner = governing_domain(settings, domain) or ""
        if owner not in compiled:
            block = settings.domains[owner] if owner else DomainBlock()
            compiled[owner] = DomainPolicy.compile(owner, block)  # type: ignore[arg-type]
        policies[domain] = compiled[owner]
    return Snapshot(
        settings=settings,
        digest=digest,
        source=source,
        policies=policies,
        trusted=_ip_table(settings.trusted_networks),
    )
