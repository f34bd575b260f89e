"""Does a hosted domain's MX point at its inbound gateway?

Description:
    With ``gateway.only_from_gateway`` on, this server refuses external mail that does not
    come from a gateway address. If the domain's MX records point anywhere else — at this
    server itself, at an old filtering service — senders who follow them are refused and
    the mail bounces. :func:`check_gateway_mx` looks the MX hosts up (the domain's
    authoritative servers, or ``dns.nameserver``/``--nameserver``) and judges each address
    against the gateway entries with the same compiled table policyd uses.

Settings read:
    ``domains.*.gateway`` (``enabled``, ``ips``, ``only_from_gateway``).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from postwarden.mx.lookup import MailHosts, MxLookupFailed, mail_hosts
from postwarden.settings.snapshot import DomainPolicy, Snapshot


@dataclass(frozen=True)
class HostVerdict:
    name: str
    preference: int
    addresses: dict[str, bool]  # address -> is a gateway address
    problem: str = ""

    @property
    def at_gateway(self) -> bool:
        return bool(self.addresses) and all(self.addresses.values())


@dataclass(frozen=True)
class GatewayMx:
    domain: str
    gateway_on: bool
    only_from_gateway: bool
    hosts: list[HostVerdict] = field(default_factory=list)
    null_mx: bool = False
    error: str = ""
    source: str = ""

    @property
    def points_at_gateway(self) -> bool:
        return not self.error and bool(self.hosts) and all(h.at_gateway for h in self.hosts)

    @property
    def elsewhere(self) -> list[str]:
        """``host (address)`` for every address that is not a gateway address."""
        found = []
        for host in self.hosts:
            found += [f"{host.name} ({a})" for a, ok in host.addresses.items() if not ok]
            if not host.addresses:
                found.append(f"{host.name} ({host.problem or 'no address'})")
        return found

    @property
    def warning(self) -> str | None:
        """The warning for ``status``/``check --dns``: only-from-gateway and MX elsewhere."""
        if not (self.gateway_on and self.only_from_gateway):
            return None
        if self.error:
            return f"{self.domain}: gateway MX not checked ({self.error})"
        if self.null_mx:
            return f"{self.domain}: receives only from its gateway but has a null MX"
        if self.points_at_gateway:
            return None
        return (
            f"{self.domain} receives only from its gateway, but its MX points elsewhere:"
            f" {', '.join(self.elsewhere)}; mail sent there is refused"
        )


def check_gateway_mx(
    domain: str, policy: DomainPolicy, *, nameserver: str | None, timeout: float
) -> GatewayMx:
    gateway = policy.block.gateway
    base: dict[str, Any] = {
        "domain": domain,
        "gateway_on": gateway.enabled,
        "only_from_gateway": gateway.only_from_gateway,
    }
    try:
        found: MailHosts = mail_hosts(
            domain, nameserver=nameserver, authoritative=True, timeout=timeout
        )
    except MxLookupFailed as exc:
        return GatewayMx(**base, error=str(exc))
    hosts = [
        HostVerdict(
            host.name,
            host.preference,
            {a: policy.gateway.lookup_text(a) is not None for a in host.addresses},
            host.problem,
        )
        for host in found.hosts
    ]
    return GatewayMx(**base, hosts=hosts, null_mx=found.null_mx, source=found.source)


def gateway_only_domains(snapshot: Snapshot) -> list[str]:
    """Hosted domains whose governing block receives only from its gateway."""
    return [
        domain
        for domain in snapshot.hosted_domains
        if (policy := snapshot.policy_for(domain)) is not None
        and policy.block.gateway.enabled
        and policy.block.gateway.only_from_gateway
    ]


def gateway_warnings(
    snapshot: Snapshot,
    *,
    nameserver: str | None,
    timeout: float,
    only: Collection[str] | None = None,
) -> list[str]:
    """The warnings of every gateway-only domain (of *only*) whose MX points elsewhere."""
    warnings = []
    for domain in gateway_only_domains(snapshot):
        if only is not None and domain not in only:
            continue
        policy = snapshot.policy_for(domain)
        assert policy is not None
        result = check_gateway_mx(domain, policy, nameserver=nameserver, timeout=timeout)
        if result.warning:
            warnings.append(result.warning)
    return warnings
