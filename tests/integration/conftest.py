"""Checks every integration test gets (no private key material in any log it produced),
and the ``daemons`` fixture: policyd and the milter of the module's ``installation``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.daemons import Installation, MilterDaemon, Policyd

PEM_LINE = 40  # base64 lines of a PEM body are 64 characters; shorter ones are not telling


def _key_lines(base: Path) -> set[str]:
    lines: set[str] = set()
    for key in base.rglob("dkim/*/*.pem"):
        body = [
            x
            for x in key.read_text(errors="replace").splitlines()
            if x and not x.startswith("-----")
        ]
        lines.update(x for x in body if len(x) >= PEM_LINE)
    return lines


@pytest.fixture(autouse=True)
def no_key_material_in_logs(traversable_tmp: Path) -> Iterator[None]:
    yield
    secrets = _key_lines(traversable_tmp)
    if not secrets:
        return
    for log in traversable_tmp.rglob("*.log"):
        text = log.read_text(errors="replace")
        leaked = [line for line in secrets if line in text]
        assert not leaked, f"private key material in {log}"


@pytest.fixture
def daemons(installation: Installation) -> Iterator[tuple[Policyd, MilterDaemon]]:
    """policyd and the milter (which asks this policyd) of *installation*, as the service user."""
    policyd = Policyd(installation)
    milter = MilterDaemon(installation, policyd)
    policyd.start()
    milter.start()
    try:
        yield policyd, milter
    finally:
        milter.stop()
        policyd.stop()
