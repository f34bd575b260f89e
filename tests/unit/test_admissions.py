"""The unknown-recipient admissions of policyd: single use, expiring, bounded."""

from __future__ import annotations

from postwarden.policyd.service import ADMISSIONS_PER_ADDRESS, Admissions


def test_an_admission_is_used_once() -> None:
    table = Admissions(lifetime=60)
    assert table.admit("a@x.test", 0)
    assert table.take("a@x.test", 1)
    assert not table.take("a@x.test", 2)  # another transaction cannot ride on it


def test_each_policy_answer_admits_one_lookup() -> None:
    table = Admissions(lifetime=60)
    table.admit("a@x.test", 0)
    table.admit("a@x.test", 1)
    assert table.take("a@x.test", 2) and table.take("a@x.test", 3)
    assert not table.take("a@x.test", 4)


def test_admissions_expire_in_order() -> None:
    table = Admissions(lifetime=60)
    table.admit("a@x.test", 0)
    table.admit("b@x.test", 30)
    assert not table.take("a@x.test", 61)
    assert table.take("b@x.test", 61)
    assert len(table) == 0 or not table.take("b@x.test", 62)


def test_the_table_is_bounded() -> None:
    table = Admissions(lifetime=60, limit=1000)
    for i in range(5000):
        table.admit(f"u{i}@x.test", 0)
    assert len(table) == 1000
    assert not table.take("u4999@x.test", 1)  # refused: rejected as unknown, fail closed
    assert table.take("u999@x.test", 1)
    for _ in range(3 * ADMISSIONS_PER_ADDRESS):
        table.admit("same@x.test", 2)
    assert sum(table.take("same@x.test", 3) for _ in range(99)) <= ADMISSIONS_PER_ADDRESS


def test_expired_admissions_make_room() -> None:
    table = Admissions(lifetime=60, limit=10)
    for i in range(10):
        table.admit(f"u{i}@x.test", 0)
    assert table.admit("late@x.test", 61) and len(table) == 1
