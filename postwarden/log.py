"""Logging set-up shared by the daemons: mail-log style lines, to stderr or syslog.

Description:
    ``postwarden-policyd[1234]: warning: ...`` — the program name and pid as Postfix logs
    them, a severity word for anything above info (as Postfix's ``msg_warn``), then the text.
    On stderr (journald, ``make run``, tests) each line also starts with a timestamp; to
    syslog (``--syslog``) it goes to the mail facility, next to Postfix's own lines.
    Importing this module configures nothing (no side effects at import).
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
import time

_pid = os.getpid()  # the pid in every line, known without a system call per line
_forks_noted: list[bool] = []  # the fork hook is registered once


def _note_fork() -> None:
    global _pid  # noqa: PLW0603 - a forked worker logs its own pid
    _pid = os.getpid()


_SEVERITY = {logging.WARNING: "warning: ", logging.ERROR: "error: ", logging.CRITICAL: "fatal: "}


class MailLogFormatter(logging.Formatter):
    """``[Mmm dd hh:mm:ss ]program[pid]: [severity: ]message`` with one format per second."""

    def __init__(self, program: str, *, timestamps: bool) -> None:
        super().__init__()
        self.program = program
        self.timestamps = timestamps
        self._second = -1
        self._stamp = ""

    def format(self, record: logging.LogRecord) -> str:
        text = _SEVERITY.get(record.levelno, "") + record.getMessage()
        if record.exc_info or record.exc_text or record.stack_info:
            record.message = text
            text = self._with_traceback(record, text)
        return f"{self._prefix(record.created)}{self.program}[{_pid}]: {text}"

    def _prefix(self, created: float) -> str:
        if not self.timestamps:
            return ""
        second = int(created)
        if second != self._second:  # a race between threads only formats the same second twice
            self._stamp = time.strftime("%b %d %H:%M:%S ", time.localtime(second))
            self._second = second
        return self._stamp

    def _with_traceback(self, record: logging.LogRecord, text: str) -> str:
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        parts = [text]
        if record.exc_text:
            parts.append(record.exc_text)
        if record.stack_info:
            parts.append(self.formatStack(record.stack_info))
        return "\n".join(parts)


def setup(program: str, *, level: str = "info", syslog: bool = False) -> None:
    """Send the ``postwarden`` loggers' records to stderr or syslog, mail-log style."""
    if syslog and os.path.exists("/dev/log"):
        handler: logging.Handler = logging.handlers.SysLogHandler(
            "/dev/log", facility=logging.handlers.SysLogHandler.LOG_MAIL
        )
        handler.setFormatter(MailLogFormatter(program, timestamps=False))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(MailLogFormatter(program, timestamps=True))
    # The logging HOWTO's "Optimization": the mail-log line needs neither the caller's file
    # and line nor thread or process names (the formatter knows the pid), and finding them
    # costs more than the rest of a policy decision's line.
    if not _forks_noted:
        os.register_at_fork(after_in_child=_note_fork)
        _forks_noted.append(True)
    _note_fork()
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root = logging.getLogger("postwarden")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
