"""The settings file, declared once: every setting with its kind, default and doc.

Description:
    One frozen dataclass per block of the YAML file (``version: 1``). Each field is declared
    with :func:`~postwarden.settings.schema.setting`, which makes it the single source for
    reading, validating, writing back and the generated settings reference
    (``postwarden settings-reference`` and the README).

    Domains: ``domains`` maps each hosted domain to its own block, or to nothing (YAML
    ``null``), meaning "use the block of the nearest parent domain that has one". A block
    replaces its parent's whole; lists are never merged.

Security:
    The file holds no secrets (DKIM private keys live in the state directory, 0600).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from postwarden.settings.schema import (
    Bool,
    Choice,
    Domain,
    FormatVersion,
    Int,
    IpEntry,
    IpEntryKind,
    ListOf,
    MapOf,
    Record,
    Text,
    setting,
)
from postwarden.util.iptable import parse_range
from postwarden.util.linear_regex import check_pattern

SETTINGS_VERSION = 1

MAX_LISTED_IPS = 10_000
MAX_GATEWAY_IPS = 50
MAX_TLS_POLICIES = 30
MAX_TLS_PARTNERS = 100

NAME = Text(
    "a name of letters, digits, '.', '_' or '-'",
    max_length=64,
    pattern=r"[A-Za-z0-9][A-Za-z0-9._-]*",
)
_HEADER_FIELD = re.compile(r"header:[!-9;-~]+")  # RFC 5322 field name: printable, no ':'
SPAM_FIELDS = ("subject", "from", "to", "body")
HOST = Text(
    "a host name or an [address]",
    max_length=255,
    pattern=r"\[[0-9A-Fa-f:.]+\]|(?!-)[A-Za-z0-9-]{1,63}(?:\.(?!-)[A-Za-z0-9-]{1,63})*\.?",
)

LISTED_IP = IpEntryKind(warn_prefix={4: 24, 6: 48})
BLOCKED_IP = IpEntryKind()
GATEWAY_IP = IpEntryKind(max_prefix={4: 20, 6: 116})


@dataclass(frozen=True)
class Gateway:
    """The inbound gateway: a filtering server in front of this one."""

    enabled: bool = setting(Bool(), False, "Apply this domain's inbound gateway settings.")
    ips: tuple[IpEntry, ...] = setting(
        ListOf(GATEWAY_IP, max_items=MAX_GATEWAY_IPS),
        (),
        "Addresses or ranges (no wider than /20 or /116) the gateway delivers from.",
    )
    only_from_gateway: bool = setting(
        Bool(), False, "Reject external mail not delivered by a gateway IP (or an allowed IP)."
    )
    internal_via_gateway: bool = setting(
        Bool(), False, "Send internal mail through the gateway route; deliver what it hands back."
    )
    route: str = setting(NAME, "", "The route to the gateway, used by internal_via_gateway.")
    skip_spam_filter: bool = setting(
        Bool(), False, "Skip Postfix-level and downstream spam filtering for gateway mail."
    )
    max_hops: int = setting(
        Int(1, 20), 5, "Most Received headers walked to find the original sending IP."
    )


def _check_spam_field(text: str) -> str | None:
    if text in SPAM_FIELDS or _HEADER_FIELD.fullmatch(text):
        return None
    return f"{text!r} is not one of: {', '.join(SPAM_FIELDS)}, header:NAME"


@dataclass(frozen=True)
class SpamRule:
    """A regex spam rule: mail whose field matches is tagged as spam."""

    name: str = setting(
        NAME, "", "Rule name, shown in the X-Postwarden-Spam header.", required=True
    )
    field: str = setting(
        Text("a field", max_length=80, check=_check_spam_field),
        "subject",
        "subject (decoded), from, to, body (decoded text, size-capped) or header:NAME.",
    )
    pattern: str = setting(
        Text("an RE2 pattern", max_length=1000, check=check_pattern),
        "",
        "RE2 pattern searched in the field; no backreferences or lookarounds.",
        required=True,
    )
    enabled: bool = setting(
        Bool(), True, "Use this rule (the 'Use' switch: postwarden spam-rule enable|disable NAME)."
    )


@dataclass(frozen=True)
class InboundRule:
    """Inbound routing: send this domain's incoming mail to a route."""

    name: str = setting(NAME, "", "Rule name.", required=True)
    route: str = setting(NAME, "", "The route the mail goes to.", required=True)
    condition: str = setting(
        Choice("internal", "external", "all"), "all", "Which mail: internal, external or all."
    )
    unknown_recipients: bool = setting(
        Bool(), False, "Also route recipients this server does not know."
    )
    keep_local_copy: bool = setting(Bool(), False, "Also deliver known recipients' mail locally.")


@dataclass(frozen=True)
class OutboundRule:
    """Outbound routing: mail sent from this domain goes through, or also to, a route."""

    name: str = setting(NAME, "", "Rule name.", required=True)
    route: str = setting(NAME, "", "The route used.", required=True)
    condition: str = setting(
        Choice("internal", "external"), "external", "Which mail: internal or external."
    )
    action: str = setting(
        Choice("change-route", "send-additionally"),
        "change-route",
        "change-route relays through the route; send-additionally sends the sender a copy there.",
    )


@dataclass(frozen=True)
class TlsPolicy:
    """A TLS policy: mail to (outgoing) or from (incoming) partner domains needs TLS."""

    title: str = setting(
        Text("a title", max_length=100), "", "Unique title within the domain.", required=True
    )
    target: str = setting(Choice("incoming", "outgoing"), "outgoing", "incoming or outgoing mail.")
    trusted_ca: bool = setting(
        Bool(), False, "Outgoing: require a certificate from a trusted CA (Postfix 'verify')."
    )
    hostname_match: bool = setting(
        Bool(), False, "Outgoing: require the certificate to name the MX host ('verify')."
    )
    partners: tuple[str, ...] = setting(
        ListOf(Domain(allow_dot=True), max_items=MAX_TLS_PARTNERS, noun="partner domains"),
        (),
        "Partner domains; a leading dot (.example.net) means its subdomains.",
        required=True,
    )


SELECTOR = Text(
    "a selector (letters, digits and hyphens, no hyphen first or last, at most 63)",
    max_length=63,
    pattern=r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)",
)


@dataclass(frozen=True)
class Dkim:
    """DKIM signing of this domain's outgoing mail (keys: ``postwarden dkim``)."""

    enabled: bool = setting(
        Bool(), True, "Sign once a key has been verified in DNS (postwarden dkim verify)."
    )
    selector: str = setting(SELECTOR, "postwarden", "Selector `postwarden dkim create` uses.")


@dataclass(frozen=True)
class DomainBlock:
    """The settings of one hosted domain (a subdomain's block replaces its parent's)."""

    allowed_ips: tuple[IpEntry, ...] = setting(
        ListOf(LISTED_IP, max_items=MAX_LISTED_IPS),
        (),
        "Always received, not spam-filtered; beats blocked_ips (warns wider than /24, /48).",
    )
    blocked_ips: tuple[IpEntry, ...] = setting(
        ListOf(BLOCKED_IP, max_items=MAX_LISTED_IPS), (), "Rejected with 5.7.1."
    )
    gateway: Gateway = setting(Record(Gateway), Gateway(), "Inbound gateway.")
    spam_rules: tuple[SpamRule, ...] = setting(
        ListOf(Record(SpamRule), max_items=100, noun="rules"),
        (),
        "Regex rules tagging inbound external mail as spam.",
    )
    spam_rules_enabled: bool = setting(
        Bool(), True, "Run this domain's spam_rules at all (postwarden spam-rule enable|disable)."
    )
    inbound_routing: tuple[InboundRule, ...] = setting(
        ListOf(Record(InboundRule), max_items=50, noun="rules"), (), "Inbound routing rules."
    )
    outbound_routing: tuple[OutboundRule, ...] = setting(
        ListOf(Record(OutboundRule), max_items=50, noun="rules"), (), "Outbound routing rules."
    )
    tls_policies: tuple[TlsPolicy, ...] = setting(
        ListOf(Record(TlsPolicy), max_items=MAX_TLS_POLICIES, noun="TLS policies"),
        (),
        "TLS policies (at most 30, unique titles).",
    )
    dkim: Dkim = setting(Record(Dkim), Dkim(), "DKIM signing.")


@dataclass(frozen=True)
class Route:
    """A named server mail can be routed to."""

    host: str = setting(HOST, "", "Host name, or [address] (never an MX lookup).", required=True)
    port: int = setting(Int(1, 65535), 25, "TCP port.")
    mx_lookup: bool = setting(Bool(), True, "Look up MX records for a host name.")
    tls: str = setting(
        Choice("required", "optional"), "optional", "required: TLS ('encrypt') or no delivery."
    )

    @property
    def nexthop(self) -> str:
        """The Postfix next hop: ``[host]:port`` without MX lookup, ``host:port`` with."""
        host = self.host.rstrip(".").lower()
        if host.startswith("[") or not self.mx_lookup:
            return f"[{host.strip('[]')}]:{self.port}"
        return f"{host}:{self.port}"

    @property
    def address(self) -> str | None:
        """The route's IP address when it is written as ``[address]``."""
        if self.host.startswith("["):
            return self.host.strip("[]").lower().removeprefix("ipv6:")
        return None


@dataclass(frozen=True)
class BlockHistory:
    """The recent-block history kept in the state database."""

    retention_days: int = setting(Int(1, 3650), 30, "Forget blocks older than this.")
    max_entries: int = setting(Int(100, 10_000_000), 100_000, "Most (entry, client) rows kept.")
    max_attempts: int = setting(
        Int(100, 10_000_000),
        100_000,
        "Most single refused attempts kept (postwarden block history).",
    )


@dataclass(frozen=True)
class DecisionLog:
    """The bounded log of recent policy decisions that ``postwarden what-if`` replays."""

    enabled: bool = setting(
        Bool(), True, "policyd records each RCPT decision (facts and outcome, no content)."
    )
    retention_hours: int = setting(Int(1, 24 * 90), 168, "Forget decisions older than this.")
    max_entries: int = setting(Int(1000, 50_000_000), 2_000_000, "Most decisions kept.")


INTERVAL = Int(1, 30 * 86400)


@dataclass(frozen=True)
class DkimWatch:
    """The milter's DKIM key watch: pending keys activated, active keys re-checked in DNS."""

    enabled: bool = setting(Bool(), True, "Re-check DKIM keys in DNS from the milter.")
    pending_first_check: int = setting(
        INTERVAL, 300, "Seconds after creation of the first check of a pending key."
    )
    pending_max_interval: int = setting(
        INTERVAL, 6 * 3600, "Back-off ceiling (seconds) between checks of a pending key."
    )
    pending_for_hours: int = setting(
        Int(1, 24 * 30), 72, "Hours a pending key is re-checked before the watch gives up."
    )
    active_interval: int = setting(
        INTERVAL, 86400, "Seconds between checks of an active key that verifies."
    )
    failing_interval: int = setting(
        INTERVAL, 900, "Seconds between checks of an active key whose record is wrong."
    )


def _check_nameserver(text: str) -> str | None:
    return None if _NAMESERVER.fullmatch(text) else f"{text!r} is not HOST[:PORT]"


_NAMESERVER = re.compile(r"\[[0-9A-Fa-f:.]+\](?::[0-9]{1,5})?|[A-Za-z0-9.:-]{1,255}")


@dataclass(frozen=True)
class Dns:
    """How the admin tools and the DKIM key watch ask DNS."""

    nameserver: str = setting(
        Text("HOST[:PORT]", max_length=270, check=_check_nameserver),
        "",
        "Ask this server (recursion desired) instead of each zone's authoritative servers.",
    )
    timeout: int = setting(Int(1, 60), 3, "Seconds per DNS query.")


@dataclass(frozen=True)
class SpamFilter:
    """Limits of the regex spam filter."""

    body_limit: int = setting(
        Int(1024, 16 * 1024 * 1024), 256 * 1024, "Bytes of decoded body text searched."
    )


LOOPBACK = (IpEntry(parse_range("127.0.0.0/8")), IpEntry(parse_range("::1")))


@dataclass(frozen=True)
class Settings:
    """The whole settings file."""

    ALWAYS_WRITTEN = ("version", "primary_domain", "domains")

    version: int = setting(
        FormatVersion(SETTINGS_VERSION),
        SETTINGS_VERSION,
        "Format version of this file.",
        required=True,
    )
    primary_domain: str = setting(Domain(), "", "The primary hosted domain.", required=True)
    trusted_networks: tuple[IpEntry, ...] = setting(
        ListOf(BLOCKED_IP, max_items=1000),
        LOOPBACK,
        "Clients trusted like SASL users (internal mail); loopback unless set.",
    )
    domains: dict[str, DomainBlock | None] = setting(
        MapOf(Domain(), Record(DomainBlock), max_items=10_000, optional=True),
        {},
        "Hosted domains (the primary always is), each with its own block or null (parent's).",
    )
    routes: dict[str, Route] = setting(
        MapOf(NAME, Record(Route), max_items=1000), {}, "Named routes."
    )
    block_history: BlockHistory = setting(Record(BlockHistory), BlockHistory(), "Block history.")
    spam_filter: SpamFilter = setting(Record(SpamFilter), SpamFilter(), "Spam filter limits.")
    decision_log: DecisionLog = setting(
        Record(DecisionLog), DecisionLog(), "Recent decisions, for what-if."
    )
    dkim_watch: DkimWatch = setting(Record(DkimWatch), DkimWatch(), "DKIM key watch.")
    dns: Dns = setting(Record(Dns), Dns(), "DNS for the admin tools and the key watch.")

    def outgoing_tls_policies(self) -> Iterator[tuple[str, TlsPolicy]]:
        """``(domain, policy)`` for every outgoing TLS policy of every block."""
        for domain, block in self.domains.items():
            for policy in block.tls_policies if block is not None else ():
                if policy.target == "outgoing":
                    yield domain, policy
