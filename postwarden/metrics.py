"""Prometheus metrics of the daemons, served on a loopback port.

Description:
    One registry per daemon, the standard ``prometheus_client`` types, and
    :func:`start_metrics` to expose ``/metrics`` over HTTP from a thread of its own.
    Counting on a request path is one dictionary lookup and an addition. ``--metrics none``
    turns the endpoint off. The metrics are declared once, here; each daemon serves its own
    families only (:data:`POLICYD`, :data:`MILTER`), never the other's, always zero.

    A daemon with worker processes calls :func:`use_multiprocess` before forking them:
    every metric is declared again on ``prometheus_client``'s multiprocess values (one
    memory-mapped file per process in a private directory), and the parent's ``/metrics``
    sums the workers' figures — including those of workers that have since exited, so a
    counter never goes back.

Security:
    Loopback by default; the figures hold domain names and rule names, no addresses of
    senders or recipients.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
    values,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector

from postwarden.server import BadAddress, ListenAddress

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0)
registry = CollectorRegistry()


# Each daemon's families (their names without a counter's ``_total``), and those of both.
SHARED = frozenset(
    {
        "postwarden_settings_reloads",
        "postwarden_settings_refused",
        "postwarden_internal_errors",
    }
)
POLICYD = SHARED | {
    "postwarden_policy_decisions",
    "postwarden_policy_seconds",
    "postwarden_socketmap_lookups",
    "postwarden_unknown_recipient_admissions_refused",
    "postwarden_connections_refused",
}
MILTER = SHARED | {
    "postwarden_milter_messages",
    "postwarden_milter_seconds",
    "postwarden_dkim_signatures",
    "postwarden_spam_tags",
    "postwarden_gateway_blocks",
    "postwarden_gateway_unknown_origins",
    "postwarden_dkim_key_checks",  # the key watch runs in the milter
    "postwarden_dkim_keys_failing",
}


class _Only:
    """A collector serving only *families* of *source* (a registry or collector)."""

    def __init__(self, source: CollectorRegistry, families: Iterable[str]) -> None:
        self._source = source
        self._families = frozenset(families)

    def collect(self) -> Iterator[Metric]:
        return (m for m in self._source.collect() if m.name in self._families)


def start_metrics(address: str, families: Iterable[str]) -> Any:
    """Serve *families* as /metrics on *address* (``inet:HOST:PORT``) from a thread.

    ``none``: nothing. Metrics are not worth a refused start: a busy port is logged and the
    daemon runs on.
    """
    if address == "none":
        return None
    served = CollectorRegistry(auto_describe=False)
    served.register(_Only(registry, families))
    try:
        target = ListenAddress.parse(address)
        if target.path:
            raise BadAddress("metrics are served over TCP (inet:HOST:PORT)")
        if not target.is_loopback():
            log.warning("metrics served on %s, which is not loopback", address)
        server, _ = start_http_server(target.port, target.host, registry=served)
    except (OSError, BadAddress) as exc:
        log.error("metrics not served on %s: %s", address, exc)
        return None
    return server


_pid = os.getpid()


def _note_fork() -> None:
    global _pid  # noqa: PLW0603 - the one place a forked child learns its pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_note_fork)


def _current_pid() -> int:
    """This process's pid without a system call per count (multiprocess values ask often)."""
    return _pid


def use_multiprocess() -> str:
    """Count in files shared by the worker processes forked after this call; serve the sum.

    Returns the private directory (mode 0700) the files live in; it is emptied now and
    removed at exit by :func:`remove_multiprocess`.
    """
    global registry  # noqa: PLW0603 - read at call time by start_metrics
    directory = tempfile.mkdtemp(prefix="postwarden-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    values.ValueClass = values.MultiProcessValue(_current_pid)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)
    _declare(CollectorRegistry(auto_describe=True))  # the workers' own, never served
    return directory


def remove_multiprocess(directory: str) -> None:
    shutil.rmtree(directory, ignore_errors=True)


def _declare(target: CollectorRegistry) -> None:
    """Declare every metric on *target*.

    The module's names are rebound: callers read ``metrics.NAME`` at the time they count.
    """
    global POLICY_DECISIONS, POLICY_SECONDS, SOCKETMAP_LOOKUPS  # noqa: PLW0603
    global MILTER_MESSAGES, MILTER_SECONDS, DKIM_SIGNATURES, SPAM_TAGS  # noqa: PLW0603
    global GATEWAY_BLOCKS, RELOADS, ERRORS, CONNECTIONS_REFUSED  # noqa: PLW0603
    global GATEWAY_UNKNOWN_ORIGINS, ADMISSIONS_REFUSED, SETTINGS_REFUSED  # noqa: PLW0603
    global DKIM_KEY_CHECKS, DKIM_KEYS_FAILING  # noqa: PLW0603

    def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
        return Counter(name, doc, labels, registry=target)

    def histogram(name: str, doc: str, labels: tuple[str, ...] = ()) -> Histogram:
        return Histogram(name, doc, labels, buckets=LATENCY_BUCKETS, registry=target)

    POLICY_DECISIONS = counter(
        "postwarden_policy_decisions_total",
        "Policy answers by deciding rule and governing domain",
        ("rule", "domain"),
    )
    POLICY_SECONDS = histogram("postwarden_policy_seconds", "Time to answer a policy request")
    SOCKETMAP_LOOKUPS = counter(
        "postwarden_socketmap_lookups_total",
        "socketmap lookups by table and result",
        ("table", "result"),
    )
    MILTER_MESSAGES = counter(
        "postwarden_milter_messages_total", "Messages by end-of-message outcome", ("outcome",)
    )
    MILTER_SECONDS = histogram("postwarden_milter_seconds", "Time to decide at end of message")
    DKIM_SIGNATURES = counter(
        "postwarden_dkim_signatures_total", "DKIM signatures by d= domain", ("domain",)
    )
    SPAM_TAGS = counter("postwarden_spam_tags_total", "Messages tagged as spam by rule", ("rule",))
    GATEWAY_BLOCKS = counter(
        "postwarden_gateway_blocks_total",
        "Recipients removed because the original sender is blocked",
        ("domain",),
    )
    GATEWAY_UNKNOWN_ORIGINS = counter(
        "postwarden_gateway_unknown_origins_total",
        "Gateway messages whose original sending IP could not be read (judged strictly)",
        ("domain",),
    )
    ADMISSIONS_REFUSED = counter(
        "postwarden_unknown_recipient_admissions_refused_total",
        "Unknown recipients not admitted for routing because the admission table was full",
    )
    SETTINGS_REFUSED = counter(
        "postwarden_settings_refused_total",
        "Settings file versions refused (the last good settings stay in force), by reason",
        ("reason",),
    )
    RELOADS = counter("postwarden_settings_reloads_total", "New settings versions put in force")
    ERRORS = counter(
        "postwarden_internal_errors_total",
        "Requests or messages answered with a temporary failure after an internal error",
    )
    DKIM_KEY_CHECKS = counter(
        "postwarden_dkim_key_checks_total",
        "DKIM key watch checks by event (activated, verified, failing, recovered, dns-error, ...)",
        ("event",),
    )
    DKIM_KEYS_FAILING = Gauge(
        "postwarden_dkim_keys_failing",
        "Active DKIM keys whose published record is wrong (signing falls back)",
        registry=target,
        multiprocess_mode="max",
    )
    CONNECTIONS_REFUSED = counter(
        "postwarden_connections_refused_total",
        "Connections closed unanswered because the daemon's connection limit was reached",
    )


# The metrics, by name: bound by _declare() (again in a daemon with worker processes).
POLICY_DECISIONS: Counter
POLICY_SECONDS: Histogram
SOCKETMAP_LOOKUPS: Counter
MILTER_MESSAGES: Counter
MILTER_SECONDS: Histogram
DKIM_SIGNATURES: Counter
SPAM_TAGS: Counter
GATEWAY_BLOCKS: Counter
GATEWAY_UNKNOWN_ORIGINS: Counter
ADMISSIONS_REFUSED: Counter
SETTINGS_REFUSED: Counter
RELOADS: Counter
ERRORS: Counter
DKIM_KEY_CHECKS: Counter
DKIM_KEYS_FAILING: Gauge
CONNECTIONS_REFUSED: Counter
_declare(registry)
