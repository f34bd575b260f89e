"""The tests never read the machine's Postfix configuration: same results with or without it.

The session points MAIL_CONFIG at a private configuration (tests/conftest.py). Here what the
tests ask "this machine's Postfix" (the route loop guard, the postscreen export read back by
postmap: postconf and postmap without naming an instance) is asked again in a private mount
namespace where /etc/postfix has no main.cf, and where it has one that disagrees with the
private one in everything asked: the answers are the same, and the private configuration's.
CI runs the whole suite the first way (.ci/run).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
ISOLATE = ROOT / "tools" / "isolate-postfix-config"
# Were it read, this host would be another one, with no listener on port 25 and a queue
# directory that does not exist.
HOSTILE_MAIN_CF = """\
myhostname = elsewhere.example
mydestination =
inet_interfaces = 192.0.2.1
queue_directory = /nonexistent/spool
"""


def _probe(base: Path, main_cf: str | None) -> dict[str, Any]:
    isolate = [str(ISOLATE)]
    if main_cf is not None:
        (base / "main.cf").write_text(main_cf)
        isolate += ["--main-cf", str(base / "main.cf")]
    directory = base / ("with" if main_cf else "without")
    directory.mkdir()
    done = subprocess.run(
        [*isolate, sys.executable, "-m", "tests.harness.machine_postfix", str(directory)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(json.loads(done.stdout))


def test_answers_do_not_depend_on_the_machines_main_cf(traversable_tmp: Path) -> None:
    without, with_one = _probe(traversable_tmp, None), _probe(traversable_tmp, HOSTILE_MAIN_CF)
    assert without == with_one
    assert (without["init"], without["block"], without["postscreen"]) == (0, 0, 0)
    status, said = without["route to this host"]
    assert status == 1 and "is this server" in said  # the private configuration's name
    assert without["postmap"] == "reject"
