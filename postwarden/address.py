"""Mail addresses as Postfix hands them to us: the domain part, normalized for lookups.

Description:
    Settings keep domains in lower-case A-label form (see ``schema.normalize_domain``); a
    request may carry any case, a trailing dot, or a U-label domain from an SMTPUTF8 session.
    :func:`domain_of` maps all of these onto the settings' form so lookups are one dict get.
"""

from __future__ import annotations

from postwarden.util.idn import BadDomainName, to_a_label


def normalize_lookup_domain(domain: str) -> str:
    """Lower-case, no trailing dot, A-label; text that is no valid name comes back lowered."""
    domain = domain.strip().rstrip(".")
    try:
        return to_a_label(domain)
    except BadDomainName:
        return domain.lower()


def domain_of(address: str) -> str:
    """The normalized domain of *address*; '' for the null sender or a bare local part."""
    _, at, domain = address.strip().strip("<>").rpartition("@")
    return normalize_lookup_domain(domain) if at else ""
