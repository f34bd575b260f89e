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

_SEVERITY = {logging.WARNING: "warning: ", logging.ERROR: "error: ", logging.CRITICAL: "fatal: "}


class MailLogFormatter(logging.Formatter):
    def __init__(self, program: str, *, timestamps: bool) -> None:
        prefix = "%(asctime)s " if timestamps else ""
        super().__init__(f"{prefix}{program}[%(process)d]: %(message)s", "%b %d %H:%M:%S")

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = _SEVERITY.get(record.levelno, "") + record.message
        return super().formatMessage(record)


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
    root = logging.getLogger("postwarden")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
