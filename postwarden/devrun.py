"""``make run``: postwarden on an embedded default, in the foreground, until Ctrl-C.

Description:
    Prepares ``run/`` in the checkout (a copy of ``postfix-conf/settings.example.yaml`` unless
    one is there already, and a state directory), starts every daemon that exists on loopback
    ports, prints what to try, and stops everything it started on Ctrl-C or SIGTERM.
    It is a demonstration and development aid, not how production runs (see the systemd
    units in ``postfix-conf/``).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / "run"
EXAMPLE = ROOT / "postfix-conf" / "settings.example.yaml"


@dataclass(frozen=True)
class Daemon:
    name: str
    argv: list[str]


POLICY, SOCKETMAP = "inet:127.0.0.1:10040", "inet:127.0.0.1:10041"
MILTER = "inet:127.0.0.1:10042"
ASK_POLICYD = (  # what Postfix sends at RCPT time, by hand
    ".venv/bin/python -c \"import socket; s = socket.create_connection(('127.0.0.1', 10040));"
    " s.sendall(b'request=smtpd_access_policy\\nprotocol_state=RCPT\\n"
    "client_address=203.0.113.9\\nrecipient=bob@example.com\\n\\n');"
    ' print(s.recv(999).decode())"'
)


def _daemons(settings: Path, state: Path) -> list[Daemon]:
    """The daemons ``make run`` starts (loopback only)."""
    common = ["--settings", str(settings), "--state-dir", str(state)]
    policyd = [*common, "--policy", POLICY, "--socketmap", SOCKETMAP, "--tls-security-level", "may"]
    return [
        Daemon("postwarden-policyd", [sys.executable, "-m", "postwarden.policyd.main", *policyd]),
        Daemon(
            "postwarden-milter",
            [sys.executable, "-m", "postwarden.milter.main", *common, "--socket", MILTER],
        ),
    ]


def _prepare() -> tuple[Path, Path]:
    RUN.mkdir(exist_ok=True)
    settings, state = RUN / "settings.yaml", RUN / "state"
    if not settings.exists():
        shutil.copyfile(EXAMPLE, settings)
    state.mkdir(exist_ok=True)
    return settings, state


def main() -> int:
    settings, state = _prepare()
    cli = [sys.executable, "-m", "postwarden.cli", "--settings", str(settings)]
    if subprocess.run([*cli, "check"], check=False).returncode != 0:
        return 1
    processes = [(d, subprocess.Popen(d.argv)) for d in _daemons(settings, state)]
    stop = False

    def request_stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, request_stop)
    pw = f".venv/bin/postwarden --settings {settings} --state-dir {state}"
    print(f"\nsettings: {settings}\nstate:    {state}")
    print(f"policy delegation on {POLICY}, socketmap on {SOCKETMAP}, milter on {MILTER}\n")
    print("try:")
    print("  # what the policy daemon answers Postfix for a blocked sender:")
    print(f"  {ASK_POLICYD}")
    print(
        f"  {pw} explain --client-ip 203.0.113.9 --sender a@elsewhere.example"
        " --recipient bob@example.com"
    )
    print(f"  {pw} block list --sort recent")
    print(f"  {pw} postfix-config     # the main.cf/master.cf lines for your Postfix")
    print("\nCtrl-C stops everything.")
    try:
        while not stop:
            for daemon, process in processes:
                if process.poll() is not None:
                    print(f"{daemon.name} exited with status {process.returncode}")
                    stop = True
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    for _, process in processes:
        process.terminate()
    for _, process in processes:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
