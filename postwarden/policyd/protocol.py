"""The Postfix policy delegation protocol: request blocks in, ``action=`` replies out.

Description:
    Pure parsing and formatting; no sockets (the I/O layer is :mod:`postwarden.policyd.server`).

Protocol:
    Postfix sends ``name=value`` lines ending with an empty line (SMTPD_POLICY_README); the
    order of attributes does not matter and unknown attributes are ignored. The reply is
    ``action=ACTION`` followed by an empty line; ACTION is any access(5) action.

    Limits: a request larger than :data:`MAX_REQUEST` bytes, a line without ``=``, an
    attribute name that is not lower-case letters, digits and underscores, or a request type
    other than ``smtpd_access_policy`` is malformed. SMTPD_POLICY_README: "In case of trouble
    the policy server must not send a reply. Instead the server must log a warning and
    disconnect." The caller does exactly that on :class:`MalformedRequest`.

Errors:
    :class:`MalformedRequest`, naming what is wrong (safe to log: no attribute values).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from postwarden.errors import PostwardenError

MAX_REQUEST = 64 * 1024
# One name=value line; a request is well formed when every line is one (counted below).
_LINE = re.compile(rb"^([a-z0-9_]{1,64})=(.*)$", re.MULTILINE)


class MalformedRequest(PostwardenError):
    """A policy request that does not follow the protocol."""


@dataclass(frozen=True, slots=True)
class PolicyRequest:
    """The attributes of one policy request that postwarden uses."""

    protocol_state: str
    client_address: str
    client_name: str
    sender: str
    recipient: str
    queue_id: str
    sasl_username: str
    encryption_protocol: str
    server_port: str
    instance: str

    @property
    def tls(self) -> bool:
        return bool(self.encryption_protocol)


def parse_request(block: bytes) -> PolicyRequest:
    """Parse one request block (without its terminating empty line)."""
    if len(block) > MAX_REQUEST:
        raise MalformedRequest(f"request larger than {MAX_REQUEST} bytes")
    pairs = _LINE.findall(block)
    if len(pairs) != block.count(b"\n") + 1:
        raise MalformedRequest("line is not name=value")
    attributes = dict(pairs)
    kind = attributes.get(b"request")
    if kind != b"smtpd_access_policy":
        raise MalformedRequest(f"unsupported request type {_safe(kind)}")
    return _from_attributes(attributes)


def _safe(value: bytes | None) -> str:
    return "(none)" if value is None else repr(value[:40].decode("ascii", "replace"))


_USED = (  # the attributes PolicyRequest keeps, in its field order
    b"protocol_state",
    b"client_address",
    b"client_name",
    b"sender",
    b"recipient",
    b"queue_id",
    b"sasl_username",
    b"encryption_protocol",
    b"server_port",
    b"instance",
)


def _from_attributes(attributes: Mapping[bytes, bytes]) -> PolicyRequest:
    get = attributes.get
    state, *rest = (get(name, b"").decode("utf-8", "replace") for name in _USED)
    return PolicyRequest(state.upper(), *rest)


def format_reply(action: str) -> bytes:
    """``action=ACTION`` plus the empty line; line breaks in *action* would end the reply."""
    return b"action=" + action.replace("\n", " ").encode("utf-8", "replace") + b"\n\n"
