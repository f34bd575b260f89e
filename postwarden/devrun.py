"""``make run``: the whole product on loopback, in the foreground, until Ctrl-C.

Description:
    Prepares ``run/`` in the checkout and starts, wired together the way
    ``postwarden postfix-config --apply`` wires a real server:

    - postwarden-policyd (127.0.0.1:10040 policy, :10041 socketmap) and postwarden-milter
      (127.0.0.1:10042) on the example settings (``postfix-conf/settings.example.yaml``);
    - a private Postfix instance (``postfix -c run/postfix/etc``): port-25 role on
      127.0.0.1:2525, submission on 127.0.0.1:2587, mailboxes of example.com in
      ``run/postfix/mail``, everything else relayed to a local smtp-sink;
    - that smtp-sink on 127.0.0.1:10026 (the example's "archive" route), which writes what it
      receives to ``run/sink``;
    - a DKIM key for example.com, made active without a DNS check (a demonstration: a
      real installation runs ``postwarden dkim verify``);
    - postwarden-web on http://127.0.0.1:10045/ (loopback) with a demo server administrator
      ``admin`` whose password is made anew each run and printed.

    It prints three swaks commands to try and where to look, and stops everything on Ctrl-C.
    Postfix needs root; without it only the daemons start. This is a demonstration, not
    how production runs (see the systemd units in ``postfix-conf/``).
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from postwarden.dkim import keys
from postwarden.dkim.store import DkimKeys
from postwarden.state.db import StateDB

ROOT = Path(__file__).resolve().parent.parent
RUN = Path(os.environ.get("POSTWARDEN_DEMO_DIR") or ROOT / "run")
EXAMPLE = ROOT / "postfix-conf" / "settings.example.yaml"
POLICY, SOCKETMAP = "inet:127.0.0.1:10040", "inet:127.0.0.1:10041"
MILTER = "inet:127.0.0.1:10042"
MX, SUBMISSION, SINK = 2525, 2587, 10026
WEB = "inet:127.0.0.1:10045"
WEB_URL = "http://127.0.0.1:10045/"
DEMO_ADMIN = "admin"
CLI = [sys.executable, "-m", "postwarden.cli"]

MASTER_CF = """\
127.0.0.1:{mx} inet n - n - - smtpd
127.0.0.1:{submission} inet n - n - - smtpd
  -o syslog_name=postfix/submission
  -o smtpd_sasl_auth_enable=yes
pickup unix n - n 60 1 pickup
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
flush unix n - n 1000? 0 flush
proxymap unix - - n - - proxymap
smtp unix - - n - - smtp
relay unix - - n - - smtp
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
virtual unix - n n - - virtual
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
postlog unix-dgram n - n - 1 postlogd
"""


@dataclass(frozen=True)
class Process:
    name: str
    process: subprocess.Popen[bytes]


def _main_cf(base: Path) -> str:
    postfix = pwd.getpwnam("postfix")
    sink = f"smtp:[127.0.0.1]:{SINK}"
    params = {
        "compatibility_level": "3.6",
        "queue_directory": base / "spool",
        "data_directory": base / "data",
        "maillog_file": base / "maillog",
        "maillog_file_prefixes": base,
        "myhostname": "mx.example.com",
        "mydestination": "",
        "alias_maps": "",
        "inet_interfaces": "loopback-only",
        "inet_protocols": "ipv4",
        "mynetworks": "127.0.0.1/32",
        "smtpd_authorized_xclient_hosts": "127.0.0.1",
        "smtpd_peername_lookup": "no",
        "smtp_dns_support_level": "disabled",
        "smtp_host_lookup": "native",
        "default_transport": sink,
        "relay_transport": sink,
        "smtpd_relay_restrictions": (
            "permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination"
        ),
        "virtual_mailbox_domains": "example.com sales.example.com",
        "virtual_mailbox_maps": f"texthash:{base / 'etc' / 'vmailbox'}",
        "virtual_mailbox_base": base / "mail",
        "virtual_minimum_uid": "1",
        "virtual_uid_maps": f"static:{postfix.pw_uid}",
        "virtual_gid_maps": f"static:{postfix.pw_gid}",
        "minimal_backoff_time": "5s",
        "maximal_backoff_time": "10s",
        "queue_run_delay": "5s",
    }
    return "".join(f"{name} = {value}\n" for name, value in params.items())


def _postfix(base: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["postfix", "-c", str(base / "etc"), *args], capture_output=True, text=True, check=False
    )


def _start_postfix(base: Path) -> bool:
    postfix = pwd.getpwnam("postfix")
    for name in ("etc", "spool", "data", "mail"):
        (base / name).mkdir(parents=True, exist_ok=True)
    for name in ("data", "mail"):
        os.chown(base / name, postfix.pw_uid, postfix.pw_gid)
    (base / "etc" / "main.cf").write_text(_main_cf(base))
    (base / "etc" / "master.cf").write_text(MASTER_CF.format(mx=MX, submission=SUBMISSION))
    (base / "etc" / "vmailbox").write_text(
        "".join(
            f"{u}@{d} {d}/{u}/\n"
            for d in ("example.com", "sales.example.com")
            for u in ("alice", "bob")
        )
    )
    old = time.time() - 60  # Postfix waits for configuration files younger than 2 s
    for path in (base / "etc").iterdir():
        os.utime(path, (old, old))
    _postfix(base, "stop")  # a previous run interrupted hard
    done = _postfix(base, "start")
    if done.returncode != 0:
        print(f"postfix did not start; see {base / 'maillog'}")
        return False
    return True


def _demo_key(state: Path) -> None:
    """An active DKIM key for example.com, for the demonstration only (no DNS check)."""
    with StateDB.open(state) as db:
        store = DkimKeys(db)
        if store.active("example.com"):
            return
        keys.write_key(state, "example.com", "demo", keys.generate(keys.Algorithm.RSA, 2048))
        store.add("example.com", "demo", keys.Algorithm.RSA, 2048)
        store.activate("example.com", "demo", "demo key, not checked in DNS")


def _prepare() -> tuple[Path, Path]:
    RUN.mkdir(exist_ok=True)
    settings, state = RUN / "settings.yaml", RUN / "state"
    if not settings.exists():
        shutil.copyfile(EXAMPLE, settings)
    state.mkdir(exist_ok=True)
    return settings, state


def _spawn(name: str, argv: list[str]) -> Process:
    return Process(name, subprocess.Popen(argv))


def _daemons(settings: Path, state: Path) -> list[Process]:
    common = ["--settings", str(settings), "--state-dir", str(state)]
    return [
        _spawn(
            "postwarden-policyd",
            [
                sys.executable,
                "-m",
                "postwarden.policyd.main",
                *common,
                "--policy",
                POLICY,
                "--socketmap",
                SOCKETMAP,
                "--tls-security-level",
                "may",
            ],
        ),
        _spawn(
            "postwarden-milter",
            [sys.executable, "-m", "postwarden.milter.main", *common, "--socket", MILTER],
        ),
    ]


def _console(settings: Path, state: Path) -> tuple[Process, str]:
    """postwarden-web on loopback, with the demo administrator's password set anew."""
    password = secrets.token_urlsafe(12)
    common = [*CLI, "--settings", str(settings), "--state-dir", str(state), "web-user"]
    exists = (
        DEMO_ADMIN
        in subprocess.run(
            [*common, "list"], capture_output=True, text=True, check=False
        ).stdout.split()
    )
    action = ["passwd", DEMO_ADMIN] if exists else ["add", DEMO_ADMIN, "--role", "admin"]
    subprocess.run(
        [*common, *action, "--password-file", "-"],
        input=password,
        text=True,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    argv = [sys.executable, "-m", "postwarden.web.main", "--settings", str(settings)]
    argv += ["--state-dir", str(state), "--listen", WEB]
    return _spawn("postwarden-web", argv), password


def _sink() -> Process:
    dumps = RUN / "sink"
    dumps.mkdir(exist_ok=True)
    postfix = pwd.getpwnam("postfix")
    os.chown(dumps, postfix.pw_uid, postfix.pw_gid)
    return _spawn(
        "smtp-sink",
        ["smtp-sink", "-u", "postfix", "-d", f"{dumps}/%Y%m%d%H/%M.", f"127.0.0.1:{SINK}", "100"],
    )


def _wire(settings: Path, base: Path) -> None:
    subprocess.run(
        [
            *CLI,
            "--settings",
            str(settings),
            "postfix-config",
            "--apply",
            "--postfix-config-dir",
            str(base / "etc"),
            "--service",
            f"127.0.0.1:{MX}/inet",
            "--submission-service",
            f"127.0.0.1:{SUBMISSION}/inet",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    old = time.time() - 60
    for name in ("main.cf", "master.cf"):
        os.utime(base / "etc" / name, (old, old))
    _postfix(base, "reload")


def _tell(settings: Path, state: Path, with_postfix: bool, password: str) -> None:
    pw = f".venv/bin/postwarden --settings {settings} --state-dir {state}"
    print(f"\nsettings: {settings}\nstate:    {state}")
    print(f"policyd on {POLICY} and {SOCKETMAP}, milter on {MILTER}")
    print(f"web console: {WEB_URL}  user: {DEMO_ADMIN}  password: {password}")
    if with_postfix:
        mailbox = RUN / "postfix" / "mail" / "example.com" / "bob" / "new"
        print(
            f"Postfix on 127.0.0.1:{MX} (port-25 role) and 127.0.0.1:{SUBMISSION}"
            f" (submission); smtp-sink on 127.0.0.1:{SINK}\n"
        )
        print("try:")
        print("  # 1. a blocked sender: rejected at RCPT with 554 5.7.1")
        print(
            f"  swaks --server 127.0.0.1:{MX} --xclient-addr 203.0.113.9"
            " --from someone@elsewhere.example --to bob@example.com"
        )
        print("  # 2. an allowed sender (also in the blocked list: allowed wins), spammy subject:")
        print("  #    received, not tagged, marked X-Postwarden-Trusted")
        print(
            f"  swaks --server 127.0.0.1:{MX} --xclient-addr 203.0.113.7"
            " --from someone@elsewhere.example --to bob@example.com"
            " --header 'Subject: cheap pills'"
        )
        print("  # 3. an authenticated sender: DKIM-signed, relayed to the smtp-sink")
        print(
            f"  swaks --server 127.0.0.1:{SUBMISSION} --xclient-login alice"
            " --from alice@example.com --to friend@partner.example.net"
        )
        print("\nwhere to look:")
        print(f"  {mailbox}/             bob's mailbox (2.)")
        print(f"  {RUN / 'sink'}/                   what left through the sink (3.)")
        print(f"  {RUN / 'postfix' / 'maillog'}     Postfix's log")
        print(f"  {pw} block list --sort recent     the block of 1.")
    else:
        print("\nPostfix needs root: only the daemons run. Ask them by hand, e.g.:")
        print(
            f"  {pw} explain --client-ip 203.0.113.9 --sender a@elsewhere.example"
            " --recipient bob@example.com"
        )
    print("\nCtrl-C stops everything.")


def main() -> int:
    settings, state = _prepare()
    if subprocess.run([*CLI, "--settings", str(settings), "check"], check=False).returncode:
        return 1
    _demo_key(state)
    base = RUN / "postfix"
    root = os.geteuid() == 0
    processes = _daemons(settings, state)
    console, password = _console(settings, state)
    processes.append(console)
    stop = False

    def request_stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, request_stop)
    with_postfix = False
    try:
        if root:
            processes.append(_sink())
            time.sleep(1.0)  # the daemons listen before Postfix is told about them
            with_postfix = _start_postfix(base)
            if with_postfix:
                _wire(settings, base)
        _tell(settings, state, with_postfix, password)
        while not stop:
            for entry in processes:
                if entry.process.poll() is not None:
                    print(f"{entry.name} exited with status {entry.process.returncode}")
                    stop = True
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        if with_postfix:
            _postfix(base, "stop")
        for entry in processes:
            entry.process.terminate()
        for entry in processes:
            try:
                entry.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                entry.process.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
