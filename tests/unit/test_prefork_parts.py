"""The worker board: connection counts and heartbeats the worker processes share."""

from __future__ import annotations

import os

from postwarden.prefork import WorkerBoard


def _in_child(work: object) -> int:
    pid = os.fork()
    if pid == 0:
        try:
            work()  # type: ignore[operator]
        finally:
            os._exit(0)
    return os.waitpid(pid, 0)[1]


def test_board_counts_per_worker_and_knows_who_is_busier() -> None:
    board = WorkerBoard(workers=2, listeners=2)
    board.beat(0)
    board.beat(1)
    now = board.last_beat(1)
    assert _in_child(lambda: board.add(0, 1, 3)) == 0  # worker 1, in its own process
    board.add(0, 0, 1)
    assert board.count(0, 1) == 3 and board.total() == 4
    assert board.busier_than_another(0, 1, now)
    assert not board.busier_than_another(0, 0, now)
    assert not board.busier_than_another(1, 1, now)  # the other listener is even
    board.clear(0)  # worker 0 died: not alive, so nobody defers to it
    assert not board.busier_than_another(0, 1, now)
