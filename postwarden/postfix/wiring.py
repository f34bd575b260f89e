"""The main.cf and master.cf lines that attach postwarden to a Postfix installation.

Description:
    :func:`policyd_wiring` computes, from the installation's current parameters, the lines
    ``postwarden postfix-config`` prints and ``--apply`` sets with ``postconf``. Each line
    comes with the reason for its value, printed as a comment, because these are the choices
    an administrator must be able to judge:

    - ``check_policy_service`` goes into ``smtpd_recipient_restrictions`` **after relay
      control** (Postfix evaluates ``smtpd_relay_restrictions`` first; in an old-style list it
      goes after ``reject_unauth_destination``), so an allowed IP's ``OK`` can skip later
      anti-spam restrictions but never opens a relay. It is attached to the port-25 listener
      only (``-o`` in master.cf), not to submission or content-filter re-injection.
    - ``timeout=10s``: a healthy answer takes well under a millisecond; the 100 s default
      would hold every SMTP session if the daemon hung.
    - ``default_action=451 4.3.5``: when the daemon is down, mail is deferred, never accepted
      unchecked (blocked senders and gateway-only domains stay protected) and never bounced;
      senders retry.
    - ``smtp_tls_policy_maps`` gets the socketmap first, so postwarden's policies are found
      before other tables; a lookup error defers delivery (Postfix fails closed: 4.7.5).
    - DKIM signatures survive delivery (:func:`signature_wiring`): Postfix's SMTP client
      changes a message after the milter signed it in two cases. A message declared
      ``Content-Transfer-Encoding: 8bit`` going to a next hop that does not announce
      8BITMIME is converted to quoted-printable; ``disable_mime_output_conversion = yes``
      sends it as it is. A line longer than ``smtp_line_length_limit`` (999 bytes with its
      CR LF: RFC 5322's 998) is broken in two; ``smtp_line_length_limit = 0`` (asked for
      with ``--long-lines keep``) sends it whole. Either change breaks the signature of
      every such message, and every verifier then fails it.

Errors:
    :class:`UnsafeConfiguration` when relay control is missing: adding an ``OK`` answer to
    such a configuration could make an open relay.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from postwarden import listeners
from postwarden.errors import PostwardenError
from postwarden.postfix.postconf import split_list
from postwarden.routing import HANDBACK_DAEMON_NAME

RELAY_CONTROL = ("reject_unauth_destination", "defer_unauth_destination")
POLICY_TIMEOUT = "10s"
POLICY_DEFAULT_ACTION = "451 4.3.5 Policy service unavailable; try again later"
RESTRICTIONS_PARAMETER = "postwarden_recipient_restrictions"
_RELAY_CONTROL = re.compile(r"\b(?:reject|defer)_unauth_destination\b")


class UnsafeConfiguration(PostwardenError):
    """The Postfix configuration is not safe to attach postwarden to."""


@dataclass(frozen=True)
class Line:
    """One setting: ``main`` (main.cf), ``master`` (``service/type/parameter`` overrides) or
    ``service`` (a whole master.cf service, ``service/type`` = its line)."""

    file: str
    name: str
    value: str
    why: str

    def postconf_argv(self) -> list[str]:
        flag = {"main": "-e", "master": "-P", "service": "-M"}[self.file]
        return [flag, f"{self.name}={self.value}"]

    def __str__(self) -> str:
        if self.file == "main":
            return f"{self.name} = {self.value}"
        return f"{self.name}={self.value}"


def postfix_address(address: str, queue_directory: str) -> str:
    """*address* as Postfix should name it: a unix socket under the queue directory relative
    to it, which is what works from a chrooted smtpd/smtp (Debian's default) and unchrooted.
    """
    kind, _, path = address.partition(":")
    prefix = queue_directory.rstrip("/") + "/"
    if kind == "unix" and queue_directory and path.startswith(prefix):
        return f"unix:{path[len(prefix) :]}"
    return address


def policy_service(address: str) -> str:
    # A value with spaces needs braces of its own inside the { ... } option list.
    return (
        f"check_policy_service {{ {address}, timeout={POLICY_TIMEOUT},"
        f" {{ default_action = {POLICY_DEFAULT_ACTION} }} }}"
    )


def policyd_wiring(
    parameters: dict[str, str], *, policy: str, socketmap: str, service: str = "smtp/inet"
) -> list[Line]:
    """The lines for the policy daemon, given the current (expanded) parameters.

    *parameters* holds ``queue_directory`` and ``smtpd_relay_restrictions`` expanded
    (``postconf -xh``: the latter's default depends on ``compatibility_level``), and
    ``smtpd_recipient_restrictions`` and ``smtp_tls_policy_maps`` as written
    (``postconf -h``), so that ``$name`` references in the site's own list keep following
    the site's changes.
    """
    relay = split_list(parameters.get("smtpd_relay_restrictions", ""))
    recipient = parameters.get("smtpd_recipient_restrictions", "").strip().strip(",").strip()
    inline = list(_RELAY_CONTROL.finditer(recipient))
    if not any(item in RELAY_CONTROL for item in relay) and not inline:
        raise UnsafeConfiguration(
            "neither smtpd_relay_restrictions nor smtpd_recipient_restrictions contains"
            " reject_unauth_destination: refusing to add an OK-capable policy check to a"
            " configuration without relay control"
        )
    queue_directory = parameters.get("queue_directory", "")
    ours = policy_service(postfix_address(policy, queue_directory))
    socketmap = postfix_address(socketmap, queue_directory)
    if inline:  # old-style list: relay control happens inside it, so we go after it
        end = inline[-1].end()
        restrictions = f"{recipient[:end]}, {ours}{recipient[end:]}"
    else:
        restrictions = f"{ours}, {recipient}" if recipient else ours
    tls_maps = [
        m
        for m in split_list(parameters.get("smtp_tls_policy_maps", ""))
        if m != f"socketmap:{socketmap}:tlspolicy"
    ]
    return [
        Line(
            "main",
            RESTRICTIONS_PARAMETER,
            restrictions,
            "the recipient restrictions of the port-25 listener: the site's own list with"
            " postwarden's check after relay control; an allowed IP's OK skips what follows",
        ),
        Line(
            "master",
            f"{service}/smtpd_recipient_restrictions",
            f"${RESTRICTIONS_PARAMETER}",
            "only the port-25 listener asks postwarden; submission and content-filter"
            " re-injection listeners do not",
        ),
        Line(
            "main",
            "smtp_tls_policy_maps",
            ", ".join([f"socketmap:{socketmap}:tlspolicy", *tls_maps]),
            "outgoing TLS policies per partner domain (strictest wins, never weaker than"
            " smtp_tls_security_level); a failed lookup defers delivery, never sends in clear",
        ),
    ]


MILTER_PARAMETER = "postwarden_milter"
SMTPD_MILTERS_PARAMETER = "postwarden_smtpd_milters"
MILTER_TIMEOUTS = "connect_timeout=10s, command_timeout=30s, content_timeout=120s"
# The macros the milter reads, by the parameter that must send them; each is in Postfix's
# defaults ({daemon_name} at connect, and macro values persist to later stages).
MILTER_MACROS = {
    "milter_mail_macros": "{auth_authen}",
    "milter_end_of_data_macros": "i",
    "milter_connect_macros": "{daemon_name}",
}


def milter_wiring(
    parameters: dict[str, str], *, milter: str, services: Sequence[str]
) -> list[Line]:
    """The lines for the milter, given the current parameters (as written).

    *parameters* holds ``queue_directory``, ``smtpd_milters``, ``non_smtpd_milters`` and the
    macro parameters of :data:`MILTER_MACROS`; *services* are the master.cf services
    (port 25 and submission) whose mail the milter sees.
    """
    ours = f"${MILTER_PARAMETER}"
    address = postfix_address(milter, parameters.get("queue_directory", ""))
    smtpd = [m for m in _milter_list(parameters.get("smtpd_milters", "")) if m != ours]
    local = [m for m in _milter_list(parameters.get("non_smtpd_milters", "")) if m != ours]
    lines = [
        Line(
            "main",
            MILTER_PARAMETER,
            f"{{ {address}, default_action=tempfail, {MILTER_TIMEOUTS} }}",
            "the milter; default_action=tempfail: while it is down, mail is deferred and"
            " retried, never accepted unsigned or unfiltered",
        ),
        Line(
            "main",
            SMTPD_MILTERS_PARAMETER,
            ", ".join([*smtpd, ours]),
            "the site's milters, postwarden last: it signs what the others produced",
        ),
        Line(
            "main",
            "non_smtpd_milters",
            ", ".join([*local, ours]),
            "locally submitted mail (sendmail, pickup) is signed too",
        ),
    ]
    for parameter, macro in MILTER_MACROS.items():
        current = parameters.get(parameter, "")
        if macro not in split_list(current):
            lines.append(
                Line(
                    "main",
                    parameter,
                    f"{current} {macro}".strip(),
                    f"the milter reads {macro} at this stage",
                )
            )
    lines.extend(
        Line(
            "master",
            f"{service}/smtpd_milters",
            f"${SMTPD_MILTERS_PARAMETER}",
            "the milter runs on the port-25 and submission listeners only, not on"
            " content-filter re-injection",
        )
        for service in services
    )
    return lines


EIGHT_BIT_WHY = (
    "DKIM signatures survive delivery: without it, a message declared 8bit is converted to"
    " quoted-printable for a next hop that does not announce 8BITMIME, after the milter signed"
    " it, and every verifier then fails it. Trade-off: such a hop gets 8-bit data it did not"
    " announce (RFC 6152); nearly every server accepts it, and it is what sender and"
    " signature say"
)
LONG_LINES_KEEP_WHY = (
    "lines over 998 bytes (RFC 5322) are sent whole instead of broken in two after signing,"
    " which would fail every verifier. Trade-off: a receiver may refuse or break such lines"
    " itself"
)
LONG_LINES_NOTE = (
    "Not set: smtp_line_length_limit (Postfix's 999: lines over RFC 5322's 998 bytes are"
    " broken in two after signing, which fails the signature of such a message, a rare one"
    " written by broken software). `--long-lines keep` sets it to 0: such lines go whole,"
    " signatures stay valid, but a receiver may refuse or break them itself."
)


def signature_wiring(*, keep_long_lines: bool) -> list[Line]:
    """The lines that keep DKIM signatures valid through Postfix's SMTP client."""
    lines = [Line("main", "disable_mime_output_conversion", "yes", EIGHT_BIT_WHY)]
    if keep_long_lines:
        lines.append(Line("main", "smtp_line_length_limit", "0", LONG_LINES_KEEP_WHY))
    return lines


def _milter_list(value: str) -> list[str]:
    """Split a milter list, keeping ``{ ... }`` definitions whole."""
    items, depth, current = [], 0, ""
    for char in value:
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth == 0 and char in ", \t\n":
            if current.strip():
                items.append(current.strip())
            current = ""
        else:
            current += char
    if current.strip():
        items.append(current.strip())
    return items


# The recipient tables smtpd validates with, by address class; each gets postwarden's
# rcptok table after the site's own, on the port-25 listener only (virtual(8) itself refuses
# socketmap tables for virtual_mailbox_maps, and needs none: it only delivers).
RECIPIENT_TABLES = ("virtual_mailbox_maps", "relay_recipient_maps", "local_recipient_maps")
ROUTE_SERVICE = "postwarden-route/unix"
HANDBACK_LISTEN = listeners.HANDBACK  # a Postfix listener: HOST:PORT, as master.cf writes it
HANDBACK_NETWORKS_PARAMETER = "postwarden_handback_networks"
HANDBACK_MARK = f"milter_macro_daemon_name={HANDBACK_DAEMON_NAME}"


def handback_wiring(*, listen: str, networks: Sequence[str]) -> list[Line]:
    """The listener where routes hand mail back (a DLP gateway relaying outbound mail).

    Mail arriving there was judged and routed on its way out: Postfix marks it with
    ``milter_macro_daemon_name`` (the client cannot), the milter delivers it as addressed,
    and no policy check applies. Only *networks* (loopback and the routes written as
    ``[address]``) may use it, and they may relay through it.
    """
    service = f"{listen}/inet"
    options = {
        "syslog_name": "postfix/postwarden-handback",
        "milter_macro_daemon_name": HANDBACK_DAEMON_NAME,
        "mynetworks": f"${HANDBACK_NETWORKS_PARAMETER}",
        "smtpd_client_restrictions": "permit_mynetworks,reject",
        "smtpd_relay_restrictions": "permit_mynetworks,reject",
        "smtpd_recipient_restrictions": "",
        "smtpd_milters": f"${SMTPD_MILTERS_PARAMETER}",
    }
    return [
        Line(
            "main",
            HANDBACK_NETWORKS_PARAMETER,
            " ".join(networks),
            "who may hand mail back: loopback and the routes given as [address]; add the"
            " addresses of routes given by name",
        ),
        Line(
            "service",
            service,
            f"{listen} inet n - - - - smtpd",
            "routes that hand mail back deliver it here (not to port 25): it is delivered"
            " as addressed, never routed again",
        ),
        *(
            Line("master", f"{service}/{name}", value, f"hand-back listener: {name}")
            for name, value in options.items()
        ),
    ]


def routing_wiring(
    parameters: dict[str, str], *, socketmap: str, service: str = "smtp/inet"
) -> list[Line]:
    """The lines that let routes work: transport, recipient validation, the route service.

    *parameters* holds ``queue_directory``, ``transport_maps`` and the tables of
    :data:`RECIPIENT_TABLES` as written.
    """
    socketmap = postfix_address(socketmap, parameters.get("queue_directory", ""))
    ours = f"socketmap:{socketmap}:transport"
    transports = [m for m in split_list(parameters.get("transport_maps", "")) if m != ours]
    lines = [
        Line(
            "main",
            "transport_maps",
            ", ".join([ours, *transports]),
            "mail for a route is a tagged recipient; only tagged addresses are answered",
        ),
        Line(
            "service",
            ROUTE_SERVICE,
            "postwarden-route unix - - n - - smtp",
            "delivers to routes, through Postfix's queue (retries, TLS policy per route)",
        ),
        Line(
            "master",
            f"{ROUTE_SERVICE}/smtp_generic_maps",
            f"socketmap:{socketmap}:untag",
            "the route sees the original recipient: the tag is undone on the wire",
        ),
        Line(
            "master",
            f"{ROUTE_SERVICE}/syslog_name",
            "postfix/postwarden-route",
            "route deliveries are easy to find in the mail log",
        ),
    ]
    for table in RECIPIENT_TABLES:
        value = parameters.get(table, "").strip()
        if not value:
            continue  # an empty table means "no validation" (relay) or "no such class"
        name = f"postwarden_{table}"
        lines.append(
            Line(
                "main",
                name,
                f"{value}, socketmap:{socketmap}:rcptok",
                f"{table} and, for recipients it does not know, postwarden's"
                " answer: accepted only where a route takes unknown recipients",
            )
        )
        lines.append(
            Line(
                "master",
                f"{service}/{table}",
                f"${name}",
                "the port-25 listener validates recipients with it",
            )
        )
    return lines
