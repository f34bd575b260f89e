"""The tests never read the machine's Postfix configuration: same results with or without it.

The session points MAIL_CONFIG at a private configuration (tests/conftest.py). Here the tests
that consult "this machine's Postfix" (the route loop guard, the postscreen export, which ask
postconf/postmap without naming an instance) run again in a private mount namespace where
/etc/postfix has no main.cf, and where it has one that disagrees with the private one in
everything those tests look at. CI runs the whole suite the first way (.ci/run).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ISOLATE = ROOT / "tools" / "isolate-postfix-config"
TESTS = (
    "tests/unit/test_routing.py::test_a_route_to_this_server_is_refused",
    "tests/integration/test_postscreen.py::test_postscreen_table",
)
# Were it read, this host would be another one, with no listener on port 25 and a queue
# directory that does not exist.
HOSTILE_MAIN_CF = """\
myhostname = elsewhere.example
mydestination =
inet_interfaces = 192.0.2.1
queue_directory = /nonexistent/spool
"""


@pytest.mark.parametrize("main_cf", [None, HOSTILE_MAIN_CF], ids=["no-main.cf", "a-main.cf"])
def test_results_do_not_depend_on_the_machines_main_cf(
    main_cf: str | None, traversable_tmp: Path
) -> None:
    isolate = [str(ISOLATE)]
    if main_cf is not None:
        (traversable_tmp / "main.cf").write_text(main_cf)
        isolate += ["--main-cf", str(traversable_tmp / "main.cf")]
    done = subprocess.run(
        [*isolate, sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "failed" not in done.stdout
