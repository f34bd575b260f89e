"""Mail addresses as Postfix hands them to us: the domain part, normalized for lookups.

Description:
    Settings keep domains in lower-case A-label form (see ``schema.normalize_domain``); a
    request may carry any case, a trailing dot, or a U-label domain from an SMTPUTF8 session.
    :func:`domain_of` maps all of these onto the settings' form so lookups are one dict get.

    Envelope addresses come in the form the client sent (a source route, a trailing dot,
    quotes, any case): :func:`envelope_address` gives the form Postfix stores and matches
    when a milter deletes a recipient, :func:`canonical_address` the one spelling per
    mailbox that decisions, duplicate checks and route tags use, and
    :func:`external_address` the quoted form for adding a recipient.
"""

from __future__ import annotations

import re

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


def envelope_address(argument: str) -> str:
    """The address in a MAIL/RCPT argument as Postfix's smtpd stores it.

    Angle brackets and a deprecated source route (``<@relay.example:user@domain>``) are
    removed, as smtpd's ``extract_addr`` does; the rest is left as the client wrote it.
    Postfix's ``delrcpt`` matches recipients in this form (its "original recipient").
    """
    text = argument.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip()
    if text.startswith("@") and ":" in text:
        text = text.partition(":")[2]
    return text


def canonical_address(address: str) -> str:
    """One spelling per mailbox: local part unquoted, domain as :func:`domain_of` gives it.

    Used as the key for decisions, duplicates and route tags, so ``"rita"@Route.Test.`` and
    ``rita@route.test`` are one recipient and a tag is never built on a trailing dot.
    """
    local, at, _ = address.rpartition("@")
    if not at:
        return address
    if len(local) >= 2 and local.startswith('"') and local.endswith('"'):
        local = _QUOTED_PAIR.sub(r"\1", local[1:-1])
    return f"{local}@{domain_of(address)}"


def external_address(address: str) -> str:
    """*address* in angle brackets, its local part quoted when it is no dot-atom."""
    local, at, domain = address.rpartition("@")
    if at and not _DOT_ATOM.fullmatch(local):
        escaped = local.replace("\\", "\\\\").replace('"', '\\"')
        local = f'"{escaped}"'
    return f"<{local}{at}{domain}>"


_QUOTED_PAIR = re.compile(r"\\(.)")
_DOT_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
