"""Real-Postfix test harness: a private Postfix instance, route sinks, a test CA, an SMTP client.

Integration tests (tests/integration) use it through the fixtures in tests.harness.fixtures,
which tests/conftest.py imports. Needs root and the Debian postfix package.
"""

from .client import Reply, SendResult, XclientRefused, send
from .postfix import DeliveredMessage, PostfixError, PostfixInstance, PostfixStartError
from .service_user import (
    ServiceUser,
    ensure_service_user,
    free_port,
    service_env,
    spawn_as_service_user,
    stop_process,
    wait_for_port,
    wait_for_unix_socket,
)
from .sinks import Recipient, SinkMessage, SmtpSink, TlsSink
from .tlsca import CertFiles, TestCA

__all__ = [
    "CertFiles",
    "DeliveredMessage",
    "PostfixError",
    "PostfixInstance",
    "PostfixStartError",
    "Recipient",
    "Reply",
    "SendResult",
    "ServiceUser",
    "SinkMessage",
    "SmtpSink",
    "TestCA",
    "TlsSink",
    "XclientRefused",
    "ensure_service_user",
    "free_port",
    "send",
    "service_env",
    "spawn_as_service_user",
    "stop_process",
    "wait_for_port",
    "wait_for_unix_socket",
]
