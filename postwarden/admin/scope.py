"""Which domain an operation acts on, whose block governs it, and who may reach it.

Description:
    ``--domain`` (or the console's domain page) names a hosted domain; none means the primary
    (for a domain administrator: its own domain). A domain that is not hosted and a domain
    the acting user may not reach get the same answer, so a domain administrator learns
    nothing about other customers' domains.

    A hosted domain without its own block uses its nearest parent's; an edit first gives it
    its own copy (:func:`own_block`), so the change never alters the parent and never starts
    from empty (which would silently drop the parent's lists).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from postwarden.admin.errors import NotFound
from postwarden.admin.session import Actor
from postwarden.settings.model import DomainBlock, Settings
from postwarden.settings.schema import Domain
from postwarden.settings.snapshot import governing_domain, hosted_domains


class NotHosted(NotFound):
    """The domain is not hosted here."""


@dataclass(frozen=True)
class DomainView:
    """A hosted domain as an administrator sees it: the block in force and where it is from."""

    domain: str
    governing: str  # whose block is in force ('' = the defaults)
    block: DomainBlock

    @property
    def inherited(self) -> bool:
        return self.governing != self.domain


def normalized(text: str) -> str:
    """A domain name as the settings keep it (A-label, lower case, no trailing dot)."""
    try:
        return Domain().from_text(text)
    except ValueError as exc:
        raise NotHosted(str(exc)) from None


def visible_domains(settings: Settings, actor: Actor) -> list[str]:
    """The hosted domains *actor* may see, the primary first."""
    return [d for d in hosted_domains(settings) if actor.reaches(d)]


def select(settings: Settings, actor: Actor, requested: str | None) -> str:
    """The hosted domain *requested* names (default: the primary, or the actor's own)."""
    if not requested:
        if actor.domain is not None:
            requested = actor.domain
        else:
            return settings.primary_domain
    domain = normalized(requested)
    if domain not in hosted_domains(settings) or not actor.reaches(domain):
        raise NotHosted(f"{domain} is not a hosted domain (see `postwarden domain list`)")
    return domain


def view(settings: Settings, domain: str) -> DomainView:
    governing = governing_domain(settings, domain) or ""
    block = (settings.domains.get(governing) if governing else None) or DomainBlock()
    return DomainView(domain, governing, block)


def own_block(settings: Settings, domain: str) -> tuple[DomainBlock, str | None]:
    """The block to change for *domain*, and the domain it was copied from, if any."""
    block = settings.domains.get(domain)
    if block is not None:
        return block, None
    source = governing_domain(settings, domain)
    if source is None:
        return DomainBlock(), None
    return settings.domains[source] or DomainBlock(), source


def with_block(settings: Settings, domain: str, block: DomainBlock) -> Settings:
    """*settings* with *domain*'s block replaced."""
    return replace(settings, domains={**settings.domains, domain: block})


def inheriting(settings: Settings, domain: str) -> list[str]:
    """Hosted subdomains whose settings come from *domain*'s block."""
    return [
        d
        for d in hosted_domains(settings)
        if d != domain and governing_domain(settings, d) == domain
    ]
