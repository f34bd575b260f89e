"""A hosted domain's TLS policies: list, add, edit, delete.

Description:
    A policy names partner domains whose mail must travel over TLS: ``outgoing`` (mail to
    them; ``trusted_ca`` and/or ``hostname_match`` make Postfix verify the certificate,
    level ``verify``, else ``encrypt``) or ``incoming`` (mail from them to this domain's
    recipients is refused over a plaintext session). At most 30 policies per domain with
    unique titles, at most 100 partner domains each (the schema's limits and messages).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from postwarden.admin import entries as parse
from postwarden.admin import scope
from postwarden.admin.edit import Change, edit_domain
from postwarden.admin.errors import BadInput
from postwarden.admin.session import Admin
from postwarden.settings.model import DomainBlock, Settings, TlsPolicy


def level(policy: TlsPolicy) -> str:
    """What the policy means to Postfix, in words."""
    if policy.target == "incoming":
        return "TLS required from them"
    return "verify" if policy.trusted_ca or policy.hostname_match else "encrypt"


def as_data(policy: TlsPolicy) -> dict[str, object]:
    return {
        "title": policy.title,
        "target": policy.target,
        "trusted_ca": policy.trusted_ca,
        "hostname_match": policy.hostname_match,
        "level": level(policy),
        "partners": list(policy.partners),
    }


def policies(admin: Admin, domain: str | None) -> tuple[scope.DomainView, tuple[TlsPolicy, ...]]:
    settings = admin.read().settings
    view = scope.view(settings, scope.select(settings, admin.actor, domain))
    return view, view.block.tls_policies


def _index(policies_: tuple[TlsPolicy, ...], title: str, domain: str) -> int:
    for index, policy in enumerate(policies_):
        if policy.title == title:
            return index
    raise BadInput(f"{domain} has no TLS policy titled {title!r}")


def add(
    admin: Admin,
    domain: str | None,
    *,
    title: str,
    target: str,
    partners: list[str],
    trusted_ca: bool = False,
    hostname_match: bool = False,
) -> tuple[Change, TlsPolicy]:
    policy = TlsPolicy(
        title=title,
        target=target,
        trusted_ca=trusted_ca,
        hostname_match=hostname_match,
        partners=parse.partner_domains(parse.split(partners)),
    )

    def apply(block: DomainBlock, where: str, _settings: Settings) -> DomainBlock:
        if any(p.title == title for p in block.tls_policies):
            raise BadInput(f"{where} already has a TLS policy titled {title!r}")
        return replace(block, tls_policies=(*block.tls_policies, policy))

    return edit_domain(admin, domain, apply), policy


def edit(
    admin: Admin, domain: str | None, current_title: str, **given: Any
) -> tuple[Change, TlsPolicy]:
    """Change policy *current_title*'s options given (None: keep); ``partners`` replaces."""
    allowed = {"title", "target", "trusted_ca", "hostname_match", "partners"}
    if set(given) - allowed:
        raise BadInput(f"not a TLS policy setting: {', '.join(sorted(set(given) - allowed))}")
    changes = {name: value for name, value in given.items() if value is not None}
    if "partners" in changes:
        changes["partners"] = parse.partner_domains(parse.split(changes["partners"]))
    result: list[TlsPolicy] = []

    def apply(block: DomainBlock, where: str, _settings: Settings) -> DomainBlock:
        current = list(block.tls_policies)
        index = _index(block.tls_policies, current_title, where)
        current[index] = replace(current[index], **changes)
        result[:] = [current[index]]
        return replace(block, tls_policies=tuple(current))

    return edit_domain(admin, domain, apply), result[0]


def delete(admin: Admin, domain: str | None, title: str) -> tuple[Change, TlsPolicy]:
    result: list[TlsPolicy] = []

    def apply(block: DomainBlock, where: str, _settings: Settings) -> DomainBlock:
        current = list(block.tls_policies)
        result[:] = [current.pop(_index(block.tls_policies, title, where))]
        return replace(block, tls_policies=tuple(current))

    return edit_domain(admin, domain, apply), result[0]
