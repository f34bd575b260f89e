"""What postwarden-policyd answers: policy requests and socketmap lookups.

Description:
    The service functions take the published view (a settings snapshot plus the tables
    compiled from it) and one parsed request, call the shared decision module, and return
    the reply; they log one mail-log-style line per policy decision and hand blocks to the
    recorder. They never touch sockets (:mod:`postwarden.policyd.server` does) and never
    wait on disk or DNS.

Settings read:
    ``domains.*`` (IP lists, gateway, TLS policies), ``trusted_networks``, ``routes``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from postwarden.decision import Decision, Facts, Rule, Verdict, decide_recipient
from postwarden.policyd.protocol import PolicyRequest
from postwarden.policyd.tlspolicy import TlsTable, compile_tls_table
from postwarden.settings.snapshot import Snapshot
from postwarden.settings.state import BlockEvent

log = logging.getLogger("postwarden.policyd")

DUNNO = "DUNNO"
TEMPFAIL = "451 4.3.5 Temporary policy service failure, try again later"


@dataclass(frozen=True)
class PolicydView:
    """Everything the daemon answers from, compiled once per settings version."""

    snapshot: Snapshot
    tls: TlsTable


def compile_view(snapshot: Snapshot, *, global_tls_level: str = "may") -> PolicydView:
    return PolicydView(snapshot, compile_tls_table(snapshot, global_tls_level))


def answer_policy(
    view: PolicydView, request: PolicyRequest, record: Callable[[BlockEvent], None]
) -> str:
    """The access(5) action for one request; only RCPT requests are judged."""
    if request.protocol_state != "RCPT" or not request.recipient:
        return DUNNO
    facts = Facts(
        client_ip=request.client_address,
        sender=request.sender,
        recipient=request.recipient,
        tls=request.tls,
        sasl_user=request.sasl_username,
    )
    decision = decide_recipient(view.snapshot, facts)
    if decision.rule is Rule.BLOCKED_IP and decision.entry is not None:
        record(
            BlockEvent(
                decision.governing_domain, decision.entry.text, request.client_address, time.time()
            )
        )
    _log_decision(request, decision)
    return decision.action


_WORD = {Verdict.REJECT: "reject", Verdict.DEFER: "defer"}


def _log_decision(request: PolicyRequest, decision: Decision) -> None:
    word = _WORD.get(decision.verdict) or ("permit" if decision.action == "OK" else "dunno")
    entry = f" entry={decision.entry.text}" if decision.entry else ""
    reply = f" {decision.action};" if decision.verdict is not Verdict.ACCEPT else ""
    log.info(
        "%s: %s: RCPT from %s[%s]:%s from=<%s> to=<%s> rule=%s domain=%s%s",
        request.queue_id or "NOQUEUE",
        word,
        request.client_name or "unknown",
        request.client_address,
        reply,
        request.sender,
        request.recipient,
        decision.rule.value,
        decision.governing_domain or "-",
        entry,
    )


# socketmap map name -> lookup in the view; None means NOTFOUND.
SOCKETMAP_TABLES: dict[str, Callable[[PolicydView, str], str | None]] = {
    "tlspolicy": lambda view, key: view.tls.lookup(key),
}


def answer_socketmap(view: PolicydView, request: bytes) -> bytes:
    """``name key`` → ``OK data`` / ``NOTFOUND `` / ``PERM reason`` (socketmap_table(5))."""
    name, sep, key = request.decode("utf-8", "replace").partition(" ")
    lookup = SOCKETMAP_TABLES.get(name)
    if lookup is None or not sep:
        return b"PERM unknown map name or no key"
    found = lookup(view, key)
    return b"NOTFOUND " if found is None else b"OK " + found.encode()
