"""Unknown-recipient admissions across policyd's worker processes.

Description:
    A policy answer admits an unknown recipient for one ``rcptok`` lookup, and the milter
    later asks (``unknown``) whether ``rcptok`` accepted it (see
    :mod:`postwarden.policyd.service`). The policy request and the lookups travel on
    different connections, which may reach different workers; so the socketmap listener
    is served by worker 0 alone, which keeps the admissions, and every other worker relays
    its admissions to worker 0 through a pipe the parent made before forking.

    Order is guaranteed by causality, not by timing: a relaying worker writes the address
    into the pipe before its policy answer leaves, Postfix asks ``rcptok`` only after it has
    that answer, and worker 0 empties the pipe before it answers a ``rcptok`` lookup (and
    whenever the pipe is readable). Each address is one ``write`` of at most
    :data:`MAX_ADDRESS` bytes, below ``PIPE_BUF``, so writes from several workers never
    interleave.

Errors:
    A full pipe (worker 0 stuck) or an address too long to relay: the admission is refused
    as when the table is full — logged, counted, and the recipient is then rejected as
    unknown, as Postfix would without postwarden (fail closed).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

from postwarden import metrics
from postwarden.policyd.service import PolicydView, PolicyService

log = logging.getLogger("postwarden.policyd")

MAX_ADDRESS = 1000  # bytes; PIPE_BUF is 4096 on Linux and at least 512 anywhere
REFUSAL_LOG_EVERY = 10.0


class AdmissionPipe:
    """The pipe from the relaying workers to worker 0; made in the parent, before forking."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        os.set_blocking(self.write_fd, False)


class RelayingService(PolicyService):
    """A worker other than 0: its admissions go to worker 0."""

    def __init__(self, *args: object, pipe: AdmissionPipe, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._pipe = pipe
        self._refused = 0
        self._last_refusal_log = 0.0

    def _admit(self, recipient: str) -> None:
        message = recipient.encode("utf-8", "surrogateescape") + b"\n"
        try:
            if len(message) > MAX_ADDRESS:
                raise BlockingIOError("address too long to relay")
            os.write(self._pipe.write_fd, message)
        except BlockingIOError:
            metrics.ADMISSIONS_REFUSED.inc()
            self._refused += 1
            now = time.monotonic()
            if now - self._last_refusal_log >= REFUSAL_LOG_EVERY:
                log.warning(
                    "unknown recipient <%s> not admitted: it could not be passed to the"
                    " worker that answers rcptok (%d so refused)",
                    recipient,
                    self._refused,
                )
                self._last_refusal_log = now


class CollectingService(PolicyService):
    """Worker 0: serves the socketmap, takes the other workers' admissions from the pipe."""

    def __init__(self, *args: object, pipe: AdmissionPipe, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._pipe = pipe
        self._partial = b""

    def watch(self, loop: asyncio.AbstractEventLoop) -> None:
        """Empty the pipe whenever it is readable (called once the event loop runs)."""
        loop.add_reader(self._pipe.read_fd, self.collect)

    def collect(self) -> None:
        """Admit every address waiting in the pipe."""
        while True:
            try:
                data = os.read(self._pipe.read_fd, 65536)
            except BlockingIOError:
                return
            if not data:
                return
            lines = (self._partial + data).split(b"\n")
            self._partial = lines.pop()
            for line in lines:
                super()._admit(line.decode("utf-8", "surrogateescape"))

    def _rcptok(self, view: PolicydView, key: str) -> str | None:
        self.collect()  # an admission relayed before Postfix could ask is in the pipe now
        return super()._rcptok(view, key)
