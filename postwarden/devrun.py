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


def _daemons(settings: Path, state: Path) -> list[Daemon]:
    """The daemons ``make run`` starts (loopback only)."""
    return []


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
    print(f"\nsettings: {settings}\nstate:    {state}\n")
    print("try:")
    print(f"  .venv/bin/postwarden --settings {settings} explain --client-ip 203.0.113.9 \\")
    print("      --sender someone@elsewhere.example --recipient bob@example.com")
    print(f"  .venv/bin/postwarden --settings {settings} block list --sort recent")
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
