"""Fixtures for unit tests: run the CLI in-process against a temporary settings file."""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from postwarden.cli import main
from postwarden.cli._env import Environment
from tests.harness.fixtures import make_traversable_dir


@dataclass
class Result:
    status: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


class Cli:
    """``postwarden`` run in-process with its own streams, settings file and state dir."""

    def __init__(self, tmp: Path) -> None:
        self.settings = tmp / "settings.yaml"
        self.state_dir = tmp / "state"

    def __call__(self, *argv: str, stdin: str = "") -> Result:
        env = Environment(
            stdout=io.StringIO(),
            stderr=io.StringIO(),
            stdin=io.StringIO(stdin),
            environ={
                "POSTWARDEN_SETTINGS": str(self.settings),
                "POSTWARDEN_STATE_DIR": str(self.state_dir),
            },
        )
        status = main(list(argv), env)
        return Result(status, env.stdout.getvalue(), env.stderr.getvalue())  # type: ignore[attr-defined]

    def ok(self, *argv: str, stdin: str = "") -> Result:
        result = self(*argv, stdin=stdin)
        assert result.status == 0, f"{argv}: exit {result.status}\n{result.err}"
        return result


@pytest.fixture
def cli() -> Iterator[Cli]:
    """In a 0755 directory: as root, the CLI hands the state directory to the service user,
    who must be able to reach it (pytest's own tmp_path is 0700)."""
    base = make_traversable_dir("pw-cli-")
    try:
        yield Cli(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)
