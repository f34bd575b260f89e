"""Shared pytest configuration: the real-Postfix harness fixtures (see tests/harness), and a
private stand-in for the machine's Postfix configuration, so that no test reads /etc/postfix."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from tests.harness import machine_postfix
from tests.harness.fixtures import *  # noqa: F403

_machine_config: Path | None = None


def pytest_configure(config: pytest.Config) -> None:
    """Point MAIL_CONFIG at a private configuration before any test (or child) runs."""
    global _machine_config  # one per session, removed in unconfigure
    base = Path(tempfile.mkdtemp(prefix="pw-machine-postfix-", dir="/tmp"))
    base.chmod(0o755)
    _machine_config = machine_postfix.write_config(base)
    machine_postfix.use_config(_machine_config)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _machine_config is not None:
        shutil.rmtree(_machine_config, ignore_errors=True)
