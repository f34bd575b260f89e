"""The tests' stand-in for "this machine's Postfix": a private configuration via MAIL_CONFIG.

Description:
    The command line reads the Postfix configuration of the machine when it is not given
    ``--postfix-config-dir`` (``postfix-config``, ``check --postfix``, the route loop guard),
    through ``postconf`` and ``postmap``, which honour the ``MAIL_CONFIG`` environment
    variable. The test session points ``MAIL_CONFIG`` at a configuration written here, so no
    test ever reads ``/etc/postfix``: the suite gives the same results whether the machine's
    Postfix is configured, half-configured, or (as on a fresh CI machine, where the Makefile
    preseeds "No configuration") has no ``main.cf`` at all.

    The configuration resembles what Debian's "Internet Site" writes (own host name and
    ``localhost`` as destinations, ``smtp`` and ``submission`` on every interface), with
    names under ``.test`` so that no hosted test domain is mistaken for this host.

    :func:`probe` asks "this machine's Postfix" what the tests ask it (the route loop guard,
    the postscreen export read back by ``postmap``), in one process; test_machine_postfix.py
    runs it where /etc/postfix has no main.cf and where it has one, and compares.

Security:
    Only read by ``postconf``/``postmap``; no Postfix instance runs from it.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

HOSTNAME = "mx.machine.test"

MAIN_CF = f"""\
compatibility_level = 3.6
myhostname = {HOSTNAME}
mydomain = machine.test
myorigin = $myhostname
mydestination = $myhostname, localhost.machine.test, localhost
inet_interfaces = all
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost =
smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination
alias_maps =
"""

MASTER_CF = """\
smtp       inet  n - y -     - smtpd
submission inet  n - y -     - smtpd
  -o syslog_name=postfix/submission
pickup     unix  n - y 60    1 pickup
cleanup    unix  n - y -     0 cleanup
qmgr       unix  n - n 300   1 qmgr
"""


def write_config(directory: Path) -> Path:
    """Write main.cf and master.cf into *directory* (created); return it."""
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    (directory / "main.cf").write_text(MAIN_CF)
    (directory / "master.cf").write_text(MASTER_CF)
    return directory


def use_config(directory: Path) -> None:
    """Make *directory* the Postfix configuration of this process and its children."""
    os.environ["MAIL_CONFIG"] = str(directory)


def probe(directory: Path) -> dict[str, object]:
    """What the CLI answers, about this machine's Postfix, for settings in *directory*."""
    from postwarden.cli import main
    from postwarden.cli._env import Environment

    environ = {
        "POSTWARDEN_SETTINGS": str(directory / "settings.yaml"),
        "POSTWARDEN_STATE_DIR": str(directory / "state"),
        "MAIL_CONFIG": os.environ["MAIL_CONFIG"],
    }

    def cli(*argv: str) -> tuple[int, str]:
        env = Environment(stdout=io.StringIO(), stderr=io.StringIO(), environ=environ)
        status = main(list(argv), env)
        return status, env.stdout.getvalue() + env.stderr.getvalue()  # type: ignore[attr-defined]

    table = directory / "postscreen.cidr"
    found: dict[str, object] = {
        "init": cli("init", "hosted.test")[0],
        "block": cli("block", "add", "203.0.113.0/24")[0],
        "route to this host": cli("route", "add", "self", "--host", HOSTNAME),
        "postscreen": cli(
            "postfix-config", "--components", "policyd", "--postscreen-cidr", str(table)
        )[0],
    }
    looked_up = subprocess.run(
        ["postmap", "-q", "203.0.113.9", f"cidr:{table}"],
        capture_output=True,
        text=True,
        check=False,
    )
    found["postmap"] = looked_up.stdout.strip() or looked_up.stderr.strip()
    return found


if __name__ == "__main__":
    print(json.dumps(probe(Path(sys.argv[1]))))
