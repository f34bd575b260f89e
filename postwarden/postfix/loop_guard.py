"""The route loop guard: a route must never point back at this server.

Description:
    Mail sent to a route that is this server comes back, is routed again, and loops until
    Postfix's hop limit bounces it. :func:`refuse_loop` refuses such a route when it is
    added or edited. Some answers need no configuration and are always given:

    - ``localhost`` and this host's own names (``gethostname``, ``getfqdn``);
    - a loopback address on an SMTP port (25, 465, 587): the local MTA listens there;
    - a host name looked up by MX that is a hosted domain: its MX is this server.

    The rest comes from Postfix's own configuration (``myhostname``, ``mydestination``,
    the ``inet`` listeners of master.cf): a route to one of those names or listeners is
    refused. When that configuration cannot be read the guard cannot check, so the route is
    refused, naming ``--postfix-config-dir`` (or ``MAIL_CONFIG``) to point at the instance.

Errors:
    :class:`RouteWouldLoop` naming why.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

from postwarden.errors import PostwardenError
from postwarden.postfix.postconf import (
    PostfixUnavailable,
    inet_listeners,
    parameters,
    split_list,
)
from postwarden.settings.model import Route

SMTP_PORTS = (25, 465, 587)


class RouteWouldLoop(PostwardenError):
    """The route points back at this server, or the guard cannot tell."""


def _own_names() -> set[str]:
    names = {"localhost", "localhost.localdomain"}
    for name in (socket.gethostname(), socket.getfqdn()):
        if name:
            names.add(name.rstrip(".").lower())
    return names


def _postfix_endpoints(config_dir: str | None) -> tuple[set[str], set[tuple[str, int]]]:
    """This server's names and (address, port) listeners, from its Postfix configuration."""
    try:
        values = parameters(["myhostname", "mydestination"], config_dir)
        listeners = inet_listeners(config_dir)
    except PostfixUnavailable as exc:
        where = f"in {config_dir}" if config_dir else "(MAIL_CONFIG or /etc/postfix)"
        raise RouteWouldLoop(
            f"cannot check that the route is not this server: Postfix's configuration"
            f" {where} cannot be read ({exc}); name the instance with"
            " --postfix-config-dir DIR"
        ) from None
    names = {values["myhostname"].rstrip(".").lower()}
    names.update(d.rstrip(".").lower() for d in split_list(values["mydestination"]) if ":" not in d)
    return names, listeners


def refuse_loop(route: Route, hosted: Iterable[str], config_dir: str | None) -> None:
    """Raise :class:`RouteWouldLoop` when *route* would send mail back to this server."""
    host = route.host.strip("[]").rstrip(".").lower()
    address = route.address
    if not address and host in _own_names():
        raise RouteWouldLoop(f"route host {route.host} is this server: mail sent there would loop")
    if address and _is_loopback(address) and route.port in SMTP_PORTS:
        raise RouteWouldLoop(
            f"route [{address}]:{route.port} is this server's own mail service:"
            " mail sent there would loop"
        )
    if not address and route.mx_lookup and host in {d.lower() for d in hosted}:
        raise RouteWouldLoop(
            f"route host {route.host} is a domain hosted here, and its MX is this server:"
            " mail sent there would loop (give the other server's host name or [address])"
        )
    names, listeners = _postfix_endpoints(config_dir)
    if not address and host in names:
        raise RouteWouldLoop(f"route host {route.host} is this server: mail sent there would loop")
    if address and any(
        port == route.port and (_same_ip(own, address) or (own == "*" and _is_local(address)))
        for own, port in listeners
    ):
        raise RouteWouldLoop(
            f"route [{address}]:{route.port} is one of this server's own listeners:"
            " mail sent there would loop"
        )


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _same_ip(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return False


def _is_local(address: str) -> bool:
    """Whether *address* is one of this host's addresses (it can be bound to)."""
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((address, 0))
    except (OSError, ValueError):
        return False
    return True
