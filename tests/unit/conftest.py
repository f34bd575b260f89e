"""Fixtures for unit tests: run the CLI in-process against a temporary settings file."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from postwarden.cli import main
from postwarden.cli._env import Environment


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
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)
