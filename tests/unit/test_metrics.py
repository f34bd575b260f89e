"""Every metric declared is served by a daemon, and each daemon serves only its own."""

from __future__ import annotations

from postwarden import metrics


def _declared() -> set[str]:
    return {family.name for family in metrics.registry.collect()}


def test_every_declared_metric_belongs_to_a_daemon() -> None:
    assert _declared() == metrics.POLICYD | metrics.MILTER


def test_the_daemons_share_only_the_shared_families() -> None:
    assert metrics.POLICYD & metrics.MILTER == metrics.SHARED
