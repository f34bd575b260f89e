"""The one way tests wait: poll a condition until it holds, fail loudly when it does not.

Description:
    Tests never sleep a fixed time hoping that something happened meanwhile: they wait for
    the thing itself (a socket listening, a log line, a daemon reporting the settings
    version it runs, a message in a mailbox) with :func:`wait_until`, which returns as soon
    as the condition holds and raises with a description when it does not in time.

Errors:
    TimeoutError naming what was awaited (and the last value seen); ProcessExitedError when
    the process that was to bring the condition about exited first.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class ProcessExitedError(RuntimeError):
    """The process meant to bring a condition about has exited."""


def wait_until(
    condition: Callable[[], T],
    what: str,
    timeout: float = 10.0,
    *,
    proc: subprocess.Popen[Any] | None = None,
    interval: float = 0.02,
    details: Callable[[], str] = str,
) -> T:
    """Call *condition* until it returns a true value, and return that value.

    *what* describes the condition for the error message; *proc*, when given, must stay
    alive meanwhile (its exit ends the wait at once).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise ProcessExitedError(f"{what}: process {proc.pid} exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not reached after {timeout}s (last: {value!r}){details()}")
        time.sleep(interval)
