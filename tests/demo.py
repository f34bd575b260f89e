"""``make run``: the whole product on loopback, in the foreground, until Ctrl-C.

Description:
    Prepares ``run/`` in the checkout (``POSTWARDEN_DEMO_DIR`` to put it elsewhere) and
    starts, wired the way ``postwarden postfix-config --apply`` wires a real server:

    - postwarden-policyd and postwarden-milter, as the service user (as in production), on
      the example settings (``postfix-conf/settings.example.yaml``, copied to ``run/`` once
      and kept between runs);
    - a private Postfix instance (the test harness's): port-25 role and submission, mailboxes
      of example.com and sales.example.com in ``run/postfix/mail``, everything else relayed
      to an smtp-sink, which is also the example's "archive" route and writes what it
      receives to ``run/sink``;
    - a DKIM key for example.com, made active without a DNS check (a demonstration: a real
      installation runs ``postwarden dkim verify``);
    - postwarden-web, as the service user, on loopback, with a demo server administrator
      ``admin`` whose password is made anew each run and printed.

    Every port comes from the environment, defaults in brackets: POSTWARDEN_DEMO_SMTP_PORT
    [2525] and POSTWARDEN_DEMO_SUBMISSION_PORT [2587] (Postfix), POSTWARDEN_DEMO_POLICY_PORT,
    _SOCKETMAP_PORT, _MILTER_PORT, _POLICYD_METRICS_PORT, _MILTER_METRICS_PORT (the daemons;
    defaults those of :mod:`postwarden.listeners`), POSTWARDEN_DEMO_HANDBACK_PORT (Postfix's
    hand-back listener, likewise), POSTWARDEN_DEMO_WEB_PORT (the console, likewise),
    POSTWARDEN_DEMO_SINK_PORT [10026]. All
    are checked before anything starts: a busy one is named, with the variable to change,
    and nothing is started.

    It prints three swaks commands to try and where to look, and stops everything on Ctrl-C
    (or SIGTERM). Like ``make test``, it needs root (Postfix, the service user).
    This is a demonstration, not how production runs: see README "Install on a server".
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, replace
from pathlib import Path

from postwarden import listeners
from postwarden.dkim import keys
from postwarden.dkim.store import DkimKeys
from postwarden.server import ListenAddress
from postwarden.settings.load import dump, load_text
from postwarden.state.db import StateDB
from postwarden.util.privileges import as_owner_of
from tests.harness import (
    PostfixInstance,
    ServiceUser,
    SmtpSink,
    ensure_service_user,
    spawn_as_service_user,
    stop_process,
    wait_for_port,
)
from tests.integration.daemons import Installation, MilterDaemon, Policyd, wire

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "postfix-conf" / "settings.example.yaml"
DEMO_ADMIN = "admin"
HOSTED = {"example.com": ("alice", "bob"), "sales.example.com": ("alice", "bob")}


@dataclass(frozen=True)
class Port:
    variable: str
    default: int
    what: str

    @property
    def value(self) -> int:
        text = os.environ.get(self.variable, "") or str(self.default)
        if not text.isdigit() or not 0 < int(text) < 65536:
            raise SystemExit(f"{self.variable}={text!r} is not a port number")
        return int(text)


def _port_of(address: str) -> int:
    return ListenAddress.parse(address).port


PORTS = {
    "smtp": Port("POSTWARDEN_DEMO_SMTP_PORT", 2525, "Postfix, port-25 role"),
    "submission": Port("POSTWARDEN_DEMO_SUBMISSION_PORT", 2587, "Postfix, submission"),
    "policy": Port("POSTWARDEN_DEMO_POLICY_PORT", _port_of(listeners.POLICY), "policyd"),
    "socketmap": Port(
        "POSTWARDEN_DEMO_SOCKETMAP_PORT", _port_of(listeners.SOCKETMAP), "policyd socketmap"
    ),
    "milter": Port("POSTWARDEN_DEMO_MILTER_PORT", _port_of(listeners.MILTER), "milter"),
    "policyd_metrics": Port(
        "POSTWARDEN_DEMO_POLICYD_METRICS_PORT",
        _port_of(listeners.POLICYD_METRICS),
        "policyd /metrics",
    ),
    "milter_metrics": Port(
        "POSTWARDEN_DEMO_MILTER_METRICS_PORT", _port_of(listeners.MILTER_METRICS), "milter /metrics"
    ),
    "sink": Port("POSTWARDEN_DEMO_SINK_PORT", 10026, "smtp-sink, the archive route"),
    "web": Port("POSTWARDEN_DEMO_WEB_PORT", _port_of(listeners.WEB), "the web console"),
    "handback": Port(
        "POSTWARDEN_DEMO_HANDBACK_PORT",
        int(listeners.HANDBACK.rpartition(":")[2]),
        "Postfix, hand-back from routes",
    ),
}


def busy_ports(ports: dict[str, int]) -> list[str]:
    """Why each port that cannot be listened on is busy, naming its variable."""
    problems = []
    seen: dict[int, str] = {}
    for name, port in ports.items():
        spec = PORTS[name]
        if port in seen:
            problems.append(f"port {port} is both {seen[port]} and {spec.what} ({spec.variable})")
            continue
        seen[port] = spec.what
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError as exc:
                problems.append(
                    f"port {port} for {spec.what} is in use on 127.0.0.1 ({exc.strerror});"
                    f" choose another: {spec.variable}=N make run"
                )
    return problems


class DemoInstallation(Installation):
    """run/: the example settings and the state, kept between runs."""

    def __init__(self, run: Path, user: ServiceUser, sink_port: int) -> None:
        self.base = run
        self.user = user
        self.running = []
        self.store, self.node = None, ""  # this host's files, no shared store
        self.postfix_config_dir = None  # MAIL_CONFIG: the session's; wire() names the demo's
        self.settings = run / "settings.yaml"
        self.state_dir = run / "state"
        run.mkdir(exist_ok=True)
        # The console (as the service user) replaces the settings file: the directory and the
        # file are the service group's too, as README "Web console" describes.
        os.chown(run, 0, user.gid)
        run.chmod(0o775)
        if not self.settings.exists():
            shutil.copyfile(EXAMPLE, self.settings)
        os.chown(self.settings, 0, user.gid)
        self.settings.chmod(0o660)
        self._route_archive_to(sink_port)
        self.state_dir.mkdir(mode=0o750, exist_ok=True)
        os.chown(self.state_dir, user.uid, user.gid)

    def _route_archive_to(self, port: int) -> None:
        """The example's archive route goes to the demo's smtp-sink, wherever it listens."""
        settings = load_text(self.settings.read_bytes(), str(self.settings)).settings
        archive = settings.routes.get("archive")
        if archive is not None and archive.port != port:
            routes = {**settings.routes, "archive": replace(archive, port=port)}
            self.settings.write_text(dump(replace(settings, routes=routes)))

    def demo_key(self) -> None:
        """An active DKIM key for example.com (no DNS check: a demonstration)."""
        with as_owner_of(self.state_dir), StateDB.open(self.state_dir) as db:
            store = DkimKeys(db)
            if store.active("example.com"):
                return
            key = keys.generate(keys.Algorithm.RSA, 2048)
            keys.write_key(self.state_dir, "example.com", "demo", key)
            store.add("example.com", "demo", keys.Algorithm.RSA, 2048)
            store.activate("example.com", "demo", "demo key, not checked in DNS")


def _console(inst: Installation, port: int) -> tuple[subprocess.Popen[bytes], str]:
    """postwarden-web as the service user, with the demo administrator's password made anew."""
    password = secrets.token_urlsafe(12)
    exists = DEMO_ADMIN in inst.cli("web-user", "list").stdout.split()
    action = ["passwd", DEMO_ADMIN] if exists else ["add", DEMO_ADMIN, "--role", "admin"]
    inst.cli("web-user", *action, "--password-file", "-", stdin=password)
    argv = [sys.executable, "-m", "postwarden.web.main", "--settings", str(inst.settings)]
    argv += ["--state-dir", str(inst.state_dir), "--listen", f"inet:127.0.0.1:{port}"]
    with open(inst.base / "web.log", "ab") as log:
        console = spawn_as_service_user(argv, user=inst.user, stdout=log, stderr=log)
    wait_for_port("127.0.0.1", port, timeout=30, proc=console)
    return console, password


def _tell(
    inst: Installation, ports: dict[str, int], postfix: PostfixInstance, password: str
) -> None:
    pw = f".venv/bin/postwarden --settings {inst.settings} --state-dir {inst.state_dir}"
    print(f"\nsettings: {inst.settings}\nstate:    {inst.state_dir}")
    print(
        f"policyd on 127.0.0.1:{ports['policy']} and :{ports['socketmap']}, milter on"
        f" 127.0.0.1:{ports['milter']}, as {inst.user.name}; logs in {inst.base}/*.log"
    )
    print(
        f"web console: http://127.0.0.1:{ports['web']}/  user: {DEMO_ADMIN}  password: {password}"
    )
    smtp, submission = ports["smtp"], ports["submission"]
    print(
        f"Postfix on 127.0.0.1:{smtp} (port-25 role) and 127.0.0.1:{submission} (submission);"
        f" smtp-sink on 127.0.0.1:{ports['sink']}\n"
    )
    print("try:")
    print("  # 1. a blocked sender: rejected at RCPT with 554 5.7.1")
    print(
        f"  swaks --server 127.0.0.1:{smtp} --xclient-addr 203.0.113.9"
        " --from someone@elsewhere.example --to bob@example.com"
    )
    print("  # 2. an allowed sender (also in the blocked list: allowed wins), spammy subject:")
    print("  #    received, not tagged, marked X-Postwarden-Trusted")
    print(
        f"  swaks --server 127.0.0.1:{smtp} --xclient-addr 203.0.113.7"
        " --from someone@elsewhere.example --to bob@example.com"
        " --header 'Subject: cheap pills'"
    )
    print("  # 3. an authenticated sender: DKIM-signed, relayed to the smtp-sink")
    print(
        f"  swaks --server 127.0.0.1:{submission} --xclient-login alice"
        " --from alice@example.com --to friend@partner.example.net"
    )
    print("\nwhere to look:")
    print(f"  {postfix.mail_dir}/example.com/bob/new/    bob's mailbox (2.)")
    print(f"  {inst.base / 'sink'}/    what left through the sink (3.)")
    print(f"  {postfix.log_file}    Postfix's log")
    print(f"  {pw} block list --sort recent    the block of 1.")
    print("\nCtrl-C stops everything.", flush=True)


def main() -> int:
    ports = {name: spec.value for name, spec in PORTS.items()}
    problems = busy_ports(ports)
    if problems:
        for problem in problems:
            print(f"make run: {problem}", file=sys.stderr)
        print("make run: nothing was started", file=sys.stderr)
        return 1
    if os.geteuid() != 0:
        print(
            "make run: needs root, as make test does (Postfix, the service user)", file=sys.stderr
        )
        return 1
    user = ensure_service_user()
    run = Path(os.environ.get("POSTWARDEN_DEMO_DIR") or ROOT / "run")
    inst = DemoInstallation(run, user, ports["sink"])
    checked = inst.cli("check", check=False)
    if checked.returncode:
        print(checked.stderr, file=sys.stderr)
        return 1
    inst.demo_key()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    policyd = Policyd(inst)
    milter = MilterDaemon(inst, policyd)
    policyd.policy_port, policyd.socketmap_port = ports["policy"], ports["socketmap"]
    policyd.metrics_port, milter.metrics_port = ports["policyd_metrics"], ports["milter_metrics"]
    milter.port = ports["milter"]
    postfix: PostfixInstance | None = None
    sink: SmtpSink | None = None
    console: subprocess.Popen[bytes] | None = None
    try:
        policyd.start()
        milter.start()
        console, password = _console(inst, ports["web"])
        shutil.rmtree(run / "sink", ignore_errors=True)
        sink = SmtpSink(run / "sink", port=ports["sink"])
        sink.start()
        shutil.rmtree(run / "postfix", ignore_errors=True)
        sink_nexthop = f"smtp:[127.0.0.1]:{ports['sink']}"
        postfix = PostfixInstance(
            hosted=HOSTED,
            hostname="mx.example.com",
            main_cf={"default_transport": sink_nexthop, "relay_transport": sink_nexthop},
            base=run / "postfix",
            ports={
                "mx": ports["smtp"],
                "submission": ports["submission"],
                "handback": ports["handback"],
            },
        )
        postfix.start()
        wire(postfix, policyd, milter)
        _tell(inst, ports, postfix, password)
        while not stop.wait(0.5):
            for name, process in (
                (policyd.program, policyd.process),
                (milter.program, milter.process),
                ("postwarden-web", console),
            ):
                if process is not None and process.poll() is not None:
                    print(f"{name} exited with status {process.returncode}")
                    stop.set()
    finally:
        if postfix is not None:
            postfix.stop()
        if sink is not None:
            sink.stop()
        if console is not None:
            stop_process(console)
        milter.stop()
        policyd.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
