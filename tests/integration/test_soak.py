"""A short soak (``make soak`` runs the long one): daemons killed at random, nothing lost."""

from __future__ import annotations

import pytest

from tests.soak.run import Soak

pytestmark = pytest.mark.postfix


def test_no_message_lost_or_doubled_while_daemons_are_killed() -> None:
    stats = Soak(messages=600, kills=8).run()
    print(stats.summary())
    assert stats.accepted + stats.rejected == stats.sent
    assert stats.rejected == stats.sent // 10  # exactly the blocked senders
    assert stats.lost == 0 and stats.duplicates == 0 and stats.wrongly_delivered == 0
    assert stats.delivered == stats.accepted
    assert stats.kills["policyd"] and stats.kills["milter"]
    assert stats.retries > 0  # the kills were felt: senders had to try again
    for name, (before, after) in stats.rss_mb.items():
        assert after <= before + 25, f"{name} grew from {before:.0f} to {after:.0f} MB"
