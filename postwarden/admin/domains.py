"""The hosted domains: list, add, delete (guarded), and "give it its own settings".

Description:
    A domain added has no block of its own: it uses its nearest parent's (``sales.example.com``
    uses ``example.com``'s). :func:`give_own_settings` copies that block so the domain can
    differ from its parent; any edit with the domain selected does the same.

    :func:`delete` refuses, unless forced, while deleting would lose something: the domain's
    own settings, its DKIM keys, or the settings of subdomains that inherit from it (they
    would fall back to another parent's block, or to the defaults). The refusal lists each
    loss and which subdomains would change parent. Forced, the settings go; DKIM keys stay in
    the state directory until ``postwarden dkim delete``.

    The list of hosted domains is server-wide: only a server administrator changes it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from postwarden.admin import scope
from postwarden.admin.edit import Change, edit_domain, edit_server
from postwarden.admin.errors import BadInput
from postwarden.admin.session import Admin
from postwarden.dkim.store import DkimKeys
from postwarden.settings.model import DomainBlock, Settings
from postwarden.settings.snapshot import governing_domain, hosted_domains


class Refused(BadInput):
    """Deleting the domain would lose settings, keys or change subdomains' settings."""


@dataclass(frozen=True)
class DomainRow:
    domain: str
    primary: bool
    governing: str

    @property
    def own_settings(self) -> bool:
        return self.governing == self.domain


def listing(admin: Admin) -> list[DomainRow]:
    settings = admin.read().settings
    return [
        DomainRow(d, d == settings.primary_domain, governing_domain(settings, d) or "")
        for d in scope.visible_domains(settings, admin.actor)
    ]


def add(admin: Admin, text: str) -> Change:
    domain = _name(text)

    def apply(settings: Settings) -> Settings:
        if domain in hosted_domains(settings):
            return settings
        return replace(settings, domains={**settings.domains, domain: None})

    return replace(edit_server(admin, "the list of hosted domains", apply), domain=domain)


def _name(text: str) -> str:
    try:
        return scope.normalized(text)
    except scope.NotHosted as exc:
        raise BadInput(str(exc)) from None


def describe_block(block: DomainBlock) -> list[str]:
    """What a block sets, in words ("3 blocked IPs", "the inbound gateway", ...)."""
    default = DomainBlock()
    said = []
    for f in fields(block):
        value = getattr(block, f.name)
        if value == getattr(default, f.name):
            continue
        noun = f.name.replace("_", " ").replace("ips", "IPs").replace("tls", "TLS")
        said.append(f"{len(value)} {noun}" if isinstance(value, tuple) else f"its {noun} settings")
    return said


def losses(admin: Admin, settings: Settings, domain: str) -> list[str]:
    """What deleting *domain* would lose or change, one line each."""
    lines = []
    block = settings.domains.get(domain)
    if block is not None and block != DomainBlock():
        lines.append(f"its own settings: {', '.join(describe_block(block))}")
    with admin.state(create=False) as db:
        keys = DkimKeys(db).for_domain(domain) if db is not None else []
    if keys:
        listed = ", ".join(f"{k.selector} ({k.status.value})" for k in keys)
        lines.append(f"its DKIM keys: {listed}")
    after = dict(settings.domains)
    del after[domain]
    remaining = replace(settings, domains=after)
    for child in scope.inheriting(settings, domain):
        new_parent = governing_domain(remaining, child)
        lines.append(
            f"{child} uses {domain}'s settings and would use "
            + (f"{new_parent}'s instead" if new_parent else "the defaults instead")
        )
    return lines


def delete(admin: Admin, text: str, *, force: bool = False) -> tuple[Change, list[str]]:
    """Stop hosting a domain; returns the change and what was (or would be) lost."""
    domain = _name(text)
    lost: list[str] = []

    def apply(settings: Settings) -> Settings:
        if domain == settings.primary_domain:
            raise BadInput(f"{domain} is the primary domain and cannot be deleted")
        if domain not in settings.domains:
            raise BadInput(f"{domain} is not a hosted domain")
        lost[:] = losses(admin, settings, domain)
        if lost and not force and not admin.dry_run:
            raise Refused(
                f"deleting {domain} would lose: " + "; ".join(lost) + "; nothing was changed"
                " (--force deletes it anyway)"
            )
        domains = dict(settings.domains)
        del domains[domain]
        return replace(settings, domains=domains)

    change = edit_server(admin, "the list of hosted domains", apply)
    return replace(change, domain=domain), lost


def give_own_settings(admin: Admin, domain: str | None) -> Change:
    """Give a domain that inherits its own copy of its parent's block (no-op if it has one)."""
    return edit_domain(admin, domain, lambda block, _domain, _settings: block)
