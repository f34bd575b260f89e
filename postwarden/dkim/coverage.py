"""Which key signs each hosted domain's mail, and what an administrator must be told.

Description:
    The milter signs mail from a hosted From domain whose block has ``dkim.enabled`` with
    that domain's key if it signs (active, record not found wrong by the key watch), else
    with the primary domain's (the seed's rule: mail is always signed). :func:`coverage`
    works that out for every hosted domain from the key table, for ``postwarden status``,
    and lists the warnings: a domain that would send **unsigned** mail, an active key whose
    record is wrong (and since when), a pending key the watch gave up on, and a domain
    signed by the primary's key instead of a key of its own that exists but does not sign.

Settings read:
    ``primary_domain``, ``domains.*.dkim.enabled``, ``dkim_watch.pending_for_hours``.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from postwarden.dkim.store import KeyRow, Status
from postwarden.dkim.watch import deadline
from postwarden.settings.model import DomainBlock, Settings
from postwarden.settings.snapshot import governing_domain, hosted_domains


@dataclass(frozen=True)
class DomainSigning:
    domain: str
    enabled: bool
    signer: str | None  # the d= domain whose key signs, None = unsigned
    selector: str | None
    warnings: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """The one sentence ``status``, ``dkim show`` and the console say about it."""
        if not self.enabled:
            return "not signed: signing is off in the settings (dkim.enabled: false)"
        if self.signer is None:
            return "UNSIGNED: no key of its own or of the primary domain verifies in DNS"
        if self.signer == self.domain:
            return f"signed with its own key, selector {self.selector!r}"
        return (
            f"signed with the primary domain {self.signer}'s key, selector {self.selector!r}:"
            " no key of its own signs"
        )

    def to_data(self) -> dict[str, object]:
        return {
            "enabled": self.enabled,
            "signed_by": self.signer,
            "selector": self.selector,
            "summary": self.describe(),
        }


def _when(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp).astimezone().isoformat(timespec="minutes")


def _block(settings: Settings, domain: str) -> DomainBlock:
    owner = governing_domain(settings, domain)
    return (settings.domains.get(owner) if owner else None) or DomainBlock()


def coverage(
    settings: Settings, keys: Mapping[str, Sequence[KeyRow]], now: float
) -> list[DomainSigning]:
    """Per hosted domain (primary first): who signs, and the warnings."""
    signing = {domain: next((k for k in rows if k.signs), None) for domain, rows in keys.items()}
    primary = settings.primary_domain
    result = []
    for domain in hosted_domains(settings):
        rows = keys.get(domain, ())
        warnings = [w for row in rows if (w := _key_warning(row, settings, now))]
        enabled = _block(settings, domain).dkim.enabled
        own, fallback = signing.get(domain), signing.get(primary)
        key = own or fallback
        if not enabled:
            result.append(DomainSigning(domain, False, None, None, warnings))
            continue
        if key is None:
            who = "it has no" if domain == primary else f"neither it nor {primary} has a"
            warnings.append(f"{domain} sends UNSIGNED mail: {who} DKIM key that verifies in DNS")
        elif own is None and any(r.status is Status.ACTIVE for r in rows):
            warnings.append(f"{domain} is signed with {primary}'s key instead of its own")
        result.append(
            DomainSigning(
                domain,
                True,
                key.domain if key else None,
                key.selector if key else None,
                warnings,
            )
        )
    return result


def _key_warning(row: KeyRow, settings: Settings, now: float) -> str | None:
    if row.status is Status.ACTIVE and row.failing is not None:
        return (
            f"{row.domain}: the DNS record of active key {row.selector!r} is wrong since"
            f" {_when(row.failing)} ({row.last_result or 'no detail'}); it does not sign"
            " until the record verifies again"
        )
    if row.status is Status.PENDING and now > deadline(row, settings.dkim_watch):
        return (
            f"{row.domain}: pending key {row.selector!r} was not found in DNS within"
            f" {settings.dkim_watch.pending_for_hours} hours; publish its record and run"
            " `postwarden dkim verify`"
        )
    return None
