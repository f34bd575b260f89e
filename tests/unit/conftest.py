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
from tests.harness import ServiceUser
from tests.harness.fixtures import make_traversable_dir


@dataclass
class Result:
    status: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def write_postfix_config(directory: Path) -> Path:
    """A minimal private Postfix configuration (never the machine's /etc/postfix)."""
    directory.mkdir(exist_ok=True)
    (directory / "main.cf").write_text(
        "compatibility_level = 3.6\nmyhostname = mx.unit.test\nmydestination =\n"
    )
    (directory / "master.cf").write_text(
        "smtp inet n - y - - smtpd\n127.0.0.1:10587 inet n - n - - smtpd\n"
    )
    return directory


class Cli:
    """``postwarden`` run in-process with its own streams, settings file and state dir.

    ``MAIL_CONFIG`` names a private Postfix configuration, as Postfix's own tools read it.
    """

    def __init__(self, tmp: Path) -> None:
        self.settings = tmp / "settings.yaml"
        self.state_dir = tmp / "state"
        self.postfix_config = write_postfix_config(tmp / "postfix")

    def __call__(self, *argv: str, stdin: str = "") -> Result:
        env = Environment(
            stdout=io.StringIO(),
            stderr=io.StringIO(),
            stdin=io.StringIO(stdin),
            environ={
                "POSTWARDEN_SETTINGS": str(self.settings),
                "POSTWARDEN_STATE_DIR": str(self.state_dir),
                "MAIL_CONFIG": str(self.postfix_config),
            },
        )
        status = main(list(argv), env)
        return Result(status, env.stdout.getvalue(), env.stderr.getvalue())  # type: ignore[attr-defined]

    def ok(self, *argv: str, stdin: str = "") -> Result:
        result = self(*argv, stdin=stdin)
        assert result.status == 0, f"{argv}: exit {result.status}\n{result.err}"
        return result


@pytest.fixture
def cli(service_user: ServiceUser) -> Iterator[Cli]:
    """In a 0755 directory: as root, the CLI hands the state directory to the service user
    (who must exist, and be able to reach it: pytest's own tmp_path is 0700)."""
    base = make_traversable_dir("pw-cli-")
    try:
        yield Cli(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)
