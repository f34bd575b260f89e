"""What the milter answers from: a settings snapshot plus what is compiled from it.

Description:
    Compiled in the settings-watch thread, never per message: each block's spam rules in use
    (``spam_rules_enabled`` and each rule's ``enabled``) as RE2 objects (once per block,
    however many domains share it) and the active DKIM private key
    of every hosted domain, loaded once — parsing a key costs far more than a signature.
    A new view replaces the old one whole when the settings file or the DKIM state changes.

Settings read:
    ``domains.*.spam_rules``, ``domains.*.gateway``, ``domains.*.dkim``, IP lists,
    ``trusted_networks``, ``spam_filter.body_limit``; DKIM key state from the state database.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from postwarden.milter.spam_rules import CompiledRule
from postwarden.settings.model import DomainBlock
from postwarden.settings.snapshot import Snapshot
from postwarden.util.linear_regex import compile_pattern


@dataclass(frozen=True)
class SigningKey:
    """The active DKIM key of one domain, loaded."""

    domain: str
    selector: str
    algorithm: str
    key: Any  # a cryptography private key object


def _everyone_known(address: str) -> bool:
    return True


@dataclass(frozen=True)
class MilterView:
    snapshot: Snapshot
    keys: Mapping[str, SigningKey] = field(default_factory=dict)
    rules: Mapping[str, tuple[CompiledRule, ...]] = field(default_factory=dict)
    known: Callable[[str], bool] = _everyone_known  # does Postfix know this recipient?
    asks_known: bool = False  # may a plan call *known* (a route keeping a local copy)?


def compile_view(
    snapshot: Snapshot,
    load_keys: Callable[[], Mapping[str, SigningKey]] = dict,
    known: Callable[[str], bool] = _everyone_known,
) -> MilterView:
    rules: dict[str, tuple[CompiledRule, ...]] = {}
    for policy in snapshot.policies.values():
        if policy.owner not in rules:
            rules[policy.owner] = compile_rules(policy.block)
    asks_known = known is not _everyone_known and any(
        rule.keep_local_copy
        for policy in snapshot.policies.values()
        for rule in policy.block.inbound_routing
    )
    return MilterView(snapshot, load_keys(), rules, known, asks_known)


def compile_rules(block: DomainBlock) -> tuple[CompiledRule, ...]:
    """The rules of *block* in use: none when its filter is off, else each enabled rule."""
    if not block.spam_rules_enabled:
        return ()
    return tuple(
        CompiledRule(rule.name, rule.field, compile_pattern(rule.pattern))
        for rule in block.spam_rules
        if rule.enabled
    )
