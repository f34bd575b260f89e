"""Follow README "Install on a server" on this machine without changing it (root; namespaces).

Description:
    Run by tests/integration/test_install.py as
    ``unshare --mount --propagation private --fork python -m tests.integration.install_driver
    phase1 CONFIG.json``. The commands come from the README, in order, as the test extracted
    them; the result is written to the JSON file CONFIG names.

    Phase 1 (a private mount namespace, with the network): /etc, /opt, /var and /usr/local
    become overlays whose changes land in the test's directory, so that everything the
    README installs (the virtual environment in /opt/postwarden, the service user, /etc,
    the units) is real at its real path and gone afterwards. The commands up to the
    ``pip install`` run here (pip needs the package index).

    Phase 2 (new network and PID namespaces in that mount namespace): "this server" is
    192.0.2.10 on a veth link to "the internet", a second network namespace holding the
    clients (203.0.113.9, blocked; 198.51.100.7) and two smtp-sinks (archive.example.net at
    192.0.2.25, partner.example.net's MX at 192.0.2.26). dnsmasq on 127.0.0.1:53 is the
    resolver and the authoritative server of example.com, example.net and partner.example.net.
    Postfix is configured as Debian's "Internet Site" would be for example.com (mailbox of
    user bob), with Debian's own master.cf (smtpd chrooted) and started the way Debian's unit
    starts it. Then the remaining README commands run; the PID namespace ends every process
    when the driver exits.

    /dev is private too (a tmpfs with the host's device nodes bound in), so that /dev/log can
    be the driver's own syslog receiver: what the daemons log with ``--syslog`` lands in
    ``mail.log`` with its facility, as rsyslog would write it.

    What the test acts out instead of running (:func:`run_command`): ``apt-get install``
    (checked with dpkg: installing packages is not a test's business), ``git clone`` (this
    checkout is copied there), ``systemctl daemon-reload`` (``systemd-analyze verify`` of the
    units), ``systemctl enable --now UNIT`` (the unit's ``ExecStart`` as its ``User=`` with a
    ``NOTIFY_SOCKET``, waiting for ``READY=1``: systemd is not PID 1 here), ``systemctl
    reload postfix`` (``postfix reload``), and publishing the record ``dkim create`` printed
    (done in dnsmasq right after that command).

    Last, mail: a blocked client, an accepted one (also copied to the archive route), and a
    locally submitted message to partner.example.net, whose DKIM signature dkimpy verifies
    against the DNS.

Security:
    Nothing outside the namespaces changes: overlays take every write to the system paths,
    the network exists only inside.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

import dkim
import dns.resolver

SERVER, GATEWAY = "192.0.2.10", "192.0.2.1"
ARCHIVE, PARTNER_MX = "192.0.2.25", "192.0.2.26"
BLOCKED, ALLOWED = "203.0.113.9", "198.51.100.7"
OVERLAID = ("/etc", "/opt", "/var", "/usr/local")
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
ROOT = Path(__file__).resolve().parents[2]

MAIN_CF = """\
# What Debian's postinst writes for "Internet Site", mail name example.com.
smtpd_banner = $myhostname ESMTP $mail_name (Debian/GNU)
biff = no
append_dot_mydomain = no
readme_directory = no
compatibility_level = 3.6
smtpd_relay_restrictions = permit_mynetworks permit_sasl_authenticated defer_unauth_destination
myhostname = mx.example.com
alias_maps = hash:/etc/aliases
alias_database = hash:/etc/aliases
myorigin = /etc/mailname
mydestination = $myhostname, example.com, localhost.example.com, localhost
relayhost =
mynetworks = 127.0.0.0/8 [::ffff:127.0.0.0]/104 [::1]/128
mailbox_size_limit = 0
recipient_delimiter = +
inet_interfaces = all
inet_protocols = ipv4
# The test's additions: no syslog daemon in the namespace; short retries.
maillog_file = /var/log/postfix.log
minimal_backoff_time = 2s
maximal_backoff_time = 4s
queue_run_delay = 2s
"""


def sh(argv: list[str], *, check: bool = True, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False, **kwargs)
    if check and done.returncode != 0:
        raise RuntimeError(
            f"{shlex.join(argv)}: exit {done.returncode}\n{done.stdout}{done.stderr}"
        )
    return done


def wait_until(condition: Any, what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)
    return value


# -- phase 1 ---------------------------------------------------------------------------------


def overlay_system(base: Path) -> None:
    """Make the system directories overlays writing into *base* (resolver files kept)."""
    kept = {name: Path(f"/etc/{name}").read_bytes() for name in ("resolv.conf", "hosts")}
    for directory in OVERLAID:
        layer = base / "overlay" / directory.strip("/").replace("/", "-")
        (layer / "upper").mkdir(parents=True)
        (layer / "work").mkdir()
        options = f"lowerdir={directory},upperdir={layer / 'upper'},workdir={layer / 'work'}"
        sh(["mount", "-t", "overlay", "overlay", "-o", options, directory])
    for name, data in kept.items():  # a bind-mounted resolv.conf stays what it was
        Path(f"/etc/{name}").write_bytes(data)


DEVICES = ("null", "zero", "full", "random", "urandom", "tty")


def private_dev() -> None:
    """A /dev of our own: the usual device nodes and mounts of the host's, nothing else."""
    keep = [d for d in ("pts", "shm") if os.path.ismount(f"/dev/{d}")]
    sh(["mount", "--rbind", "/dev", "/mnt"])  # the host's, to bind from
    sh(["mount", "-t", "tmpfs", "-o", "mode=0755", "dev", "/dev"])
    for name in DEVICES:
        Path(f"/dev/{name}").touch()
        sh(["mount", "--bind", f"/mnt/{name}", f"/dev/{name}"])
    for name in keep:
        Path(f"/dev/{name}").mkdir()
        sh(["mount", "--rbind", f"/mnt/{name}", f"/dev/{name}"])
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0")):
        os.symlink(target, f"/dev/{name}")
    os.symlink("/proc/self/fd/1", "/dev/stdout")
    os.symlink("/proc/self/fd/2", "/dev/stderr")
    sh(["umount", "-l", "/mnt"])


def phase1(config_path: Path) -> None:
    config = json.loads(config_path.read_text())
    base = Path(config["base"])
    overlay_system(base)
    private_dev()
    results: dict[str, Any] = {"commands": []}
    commands = config["commands"]
    last = max(i for i, c in enumerate(commands) if "pip install" in c)
    for command in commands[: last + 1]:
        results["commands"].append(run_command(command, None))
    (base / "phase1.json").write_text(json.dumps(results))
    done = subprocess.run(
        [
            *("unshare", "--net", "--pid", "--fork", "--mount-proc", sys.executable, "-m"),
            *("tests.integration.install_driver", "phase2", str(config_path)),
        ],
        cwd=ROOT,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"phase 2 exited with {done.returncode}")


# -- the README's commands -------------------------------------------------------------------


class Services:
    """What phase 2 started, for the commands that act on it."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.daemons: dict[str, subprocess.Popen[bytes]] = {}
        self.notify = base / "notify"
        self.dns: subprocess.Popen[bytes] | None = None
        self.txt: dict[str, list[str]] = {}


def run_command(command: str, services: Services | None) -> dict[str, Any]:
    """Run one README command, or act it out (see the module's description)."""
    words = shlex.split(command)
    entry: dict[str, Any] = {"command": command, "acted": ""}
    if words[:2] == ["apt-get", "install"]:
        packages = [w for w in words[2:] if not w.startswith("-")]
        missing = [p for p in packages if not _installed(p)]
        entry.update(acted=f"checked installed: {' '.join(packages)}", missing=missing)
        entry["rc"] = 1 if missing else 0
        return entry
    if words[:2] == ["git", "clone"]:
        _copy_checkout(Path(words[-1]))
        entry.update(acted=f"copied {ROOT} to {words[-1]}", rc=0)
        return entry
    if words[0] == "systemctl":
        assert services is not None, command
        return {**entry, **_systemctl(words[1:], services)}
    inherited = {k: v for k, v in os.environ.items() if k.startswith("PIP_") or "proxy" in k}
    done = subprocess.run(
        ["bash", "-euc", command],
        capture_output=True,
        text=True,
        timeout=300,
        env={**inherited, "PATH": PATH, "LANG": "C.UTF-8", "HOME": "/root"},
        cwd="/root",
        check=False,
    )
    entry.update(rc=done.returncode, out=done.stdout[-4000:], err=done.stderr[-4000:])
    if services is not None and words[:3] == ["postwarden", "dkim", "create"]:
        _publish(services)  # the administrator publishes the record at the DNS host
    return entry


def _installed(package: str) -> bool:
    done = sh(["dpkg-query", "-W", "-f=${Status}", package], check=False)
    return "install ok installed" in done.stdout


def _copy_checkout(target: Path) -> None:
    listed = sh(["git", "-C", str(ROOT), "ls-files", "-co", "--exclude-standard", "-z"]).stdout
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def _systemctl(words: list[str], services: Services) -> dict[str, Any]:
    if words == ["daemon-reload"]:
        units = sorted(Path("/etc/systemd/system").glob("postwarden-*.service"))
        done = sh(["systemd-analyze", "verify", *map(str, units)], check=False)
        return {
            "acted": "systemd-analyze verify " + " ".join(u.name for u in units),
            "rc": done.returncode,
            "err": done.stderr,
            "units": [u.name for u in units],
        }
    if words[:2] == ["enable", "--now"]:
        for name in words[2:]:
            services.daemons[name] = _start_unit(
                Path(f"/etc/systemd/system/{name}.service"), services
            )
        return {"acted": "ExecStart= as User=, waited for READY=1", "rc": 0}
    if words[1:] == ["postfix"] and words[0] in ("reload", "restart"):
        mark = _log_size()
        sh(["postfix", "reload"])
        wait_until(lambda: "reload -- version" in _log_since(mark), "postfix reload")
        return {"acted": "postfix reload", "rc": 0}
    raise ValueError(f"no stand-in for systemctl {' '.join(words)}")


def _start_unit(unit: Path, services: Services) -> subprocess.Popen[bytes]:
    """Start a unit's ExecStart= as its User=/Group=, as systemd would; wait for READY=1."""
    fields = dict(
        line.split("=", 1)
        for line in unit.read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    account = pwd.getpwnam(fields["User"])
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = services.notify / unit.stem
    path.parent.mkdir(exist_ok=True)
    path.parent.chmod(0o755)
    listener.bind(str(path))
    os.chown(path, account.pw_uid, account.pw_gid)
    log = open(services.base / f"{unit.stem}.log", "ab")  # noqa: SIM115  # the daemon's
    process = subprocess.Popen(
        shlex.split(fields["ExecStart"]),
        user=account.pw_uid,
        group=account.pw_gid,
        extra_groups=[],
        env={"PATH": PATH, "LANG": "C.UTF-8", "NOTIFY_SOCKET": str(path)},
        cwd="/",
        stdout=log,
        stderr=subprocess.STDOUT,
        umask=int(fields.get("UMask", "0022"), 8),
    )
    listener.settimeout(30)
    try:
        while b"READY=1" not in listener.recv(4096):
            pass
    finally:
        listener.close()
    return process


def _publish(services: Services) -> None:
    shown = json.loads(sh(["postwarden", "dkim", "show", "--json"], env={"PATH": PATH}).stdout)
    for key in shown["keys"]:
        if key["status"] == "pending":
            services.txt[key["host"]] = key["txt_strings"]
    _start_dns(services)


# -- phase 2 ---------------------------------------------------------------------------------


def _network() -> int:
    """Bring up "this server" and "the internet"; return the internet namespace's holder."""
    holder = subprocess.Popen(["unshare", "--net", "sleep", "infinity"])
    wait_until(lambda: _other_netns(holder.pid), "the internet namespace")
    server = [
        "link set lo up",
        "link add veth0 type veth peer name veth1",
        f"link set veth1 netns {holder.pid}",
        f"addr add {SERVER}/24 dev veth0",
        "link set veth0 up",
        f"route add default via {GATEWAY}",
    ]
    for command in server:
        sh(["ip", *command.split()])
    inside = ["link set lo up", f"addr add {GATEWAY}/24 dev veth1"]
    inside += [f"addr add {a}/32 dev veth1" for a in (ARCHIVE, PARTNER_MX, BLOCKED, ALLOWED)]
    inside.append("link set veth1 up")
    for command in inside:
        sh(internet(holder.pid, ["ip", *command.split()]))
    return holder.pid


def _other_netns(pid: int) -> bool:
    return os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net")


def internet(holder: int, argv: list[str]) -> list[str]:
    """*argv* run in the internet's network namespace."""
    return ["nsenter", f"--net=/proc/{holder}/ns/net", *argv]


def _start_dns(services: Services) -> None:
    if services.dns is not None:
        services.dns.terminate()
        services.dns.wait(10)
    lines = [
        "port=53",
        "listen-address=127.0.0.1",
        "bind-interfaces",
        "no-resolv",
        "no-hosts",
        "auth-server=ns1.example.com,127.0.0.1",
        "host-record=ns1.example.com,127.0.0.1",
        f"host-record=mx.example.com,{SERVER}",
        f"host-record=archive.example.net,{ARCHIVE}",
        f"host-record=mx.partner.example.net,{PARTNER_MX}",
        "mx-host=example.com,mx.example.com,10",
        "mx-host=partner.example.net,mx.partner.example.net,10",
    ]
    lines += [f"auth-zone={zone}" for zone in ("example.com", "example.net", "partner.example.net")]
    for name, strings in services.txt.items():
        lines.append(f"txt-record={name}," + ",".join(f'"{s}"' for s in strings))
    config = services.base / "dnsmasq.conf"
    config.write_text("\n".join(lines) + "\n")
    services.dns = subprocess.Popen(
        ["dnsmasq", "--no-daemon", f"--conf-file={config}", "--pid-file"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_until(lambda: _answers("ns1.example.com"), "dnsmasq")


def _answers(name: str) -> bool:
    try:
        return bool(socket.getaddrinfo(name, None))
    except socket.gaierror:
        return False


def _postfix() -> None:
    """Postfix as Debian's "Internet Site" leaves it, started as Debian's unit starts it."""
    Path("/etc/postfix/main.cf").write_text(MAIN_CF)
    Path("/etc/mailname").write_text("example.com\n")
    if not _has_user("bob"):
        sh(["useradd", "--create-home", "bob"])
    sh(["newaliases"])
    sh(["/usr/lib/postfix/configure-instance.sh", "-"])
    sh(["postfix", "start"])


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _log_size() -> int:
    path = Path("/var/log/postfix.log")
    return path.stat().st_size if path.exists() else 0


def _log_since(mark: int) -> str:
    path = Path("/var/log/postfix.log")
    if not path.exists():
        return ""
    with path.open("rb") as f:
        f.seek(mark)
        return f.read().decode(errors="replace")


def _sinks(base: Path, holder: int) -> dict[str, Path]:
    dumps = {}
    for name, address in (("archive", ARCHIVE), ("partner", PARTNER_MX)):
        directory = base / "sink" / name
        directory.mkdir(parents=True)
        shutil.chown(directory, "postfix", "postfix")
        subprocess.Popen(
            internet(
                holder,
                ["smtp-sink", "-u", "postfix", "-d", f"{directory}/%M.", f"{address}:25", "100"],
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        dumps[name] = directory
    for address in (ARCHIVE, PARTNER_MX):
        wait_until(lambda a=address: _connects(holder, a), f"smtp-sink on {address}")
    return dumps


def _connects(holder: int, address: str) -> bool:
    probe = f"import socket; socket.create_connection(({address!r}, 25), timeout=1).close()"
    return sh(internet(holder, [sys.executable, "-c", probe]), check=False).returncode == 0


def _swaks(holder: int, client: str, *more: str) -> str:
    argv = ["swaks", "--server", SERVER, "--local-interface", client, "--helo", "client.example"]
    argv += ["--from", "someone@elsewhere.example", "--to", "bob@example.com", *more]
    return sh(internet(holder, argv), check=False).stdout


def _mail(base: Path, holder: int, dumps: dict[str, Path]) -> dict[str, Any]:
    """Send the three kinds of mail; what came of each."""
    found: dict[str, Any] = {}
    found["blocked"] = _swaks(holder, BLOCKED)
    found["accepted"] = _swaks(holder, ALLOWED, "--header", "Subject: hello bob")
    message = b"From: alice@example.com\nTo: friend@partner.example.net\nSubject: signed\n\nhi\n"
    sh(
        ["sendmail", "-f", "alice@example.com", "friend@partner.example.net"],
        input=message.decode(),
    )
    mailbox = Path("/var/mail/bob")
    wait_until(lambda: mailbox.exists() and b"hello bob" in mailbox.read_bytes(), "bob's mail")
    for name in ("archive", "partner"):
        wait_until(lambda d=dumps[name]: list(d.iterdir()), f"mail at the {name} sink", 30)
    found["mailbox"] = mailbox.read_text(errors="replace")
    found["archive"] = [p.read_text(errors="replace") for p in dumps["archive"].iterdir()]
    partner = [p.read_bytes() for p in dumps["partner"].iterdir()]
    found["partner"] = [p.decode(errors="replace") for p in partner]
    found["dkim_verified"] = [_verify_dkim(p) for p in partner]
    return found


def _verify_dkim(dump: bytes) -> bool:
    """dkimpy's verdict on a message as the sink received it (its own header lines off)."""
    lines = dump.split(b"\n")
    while lines and re.match(rb"X-[A-Za-z-]+: ", lines[0]):
        lines.pop(0)
    lines.pop(0)  # smtp-sink's Received:
    while lines and lines[0][:1] in (b" ", b"\t"):
        lines.pop(0)
    message = b"\r\n".join(lines)

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        answer = dns.resolver.resolve(name.decode().rstrip("."), "TXT")
        return b"".join(b"".join(r.strings) for r in answer)

    return bool(dkim.verify(message, dnsfunc=dnsfunc))


class SyslogReceiver:
    """/dev/log, written down as rsyslog would: "<facility>.<severity> message" per line."""

    FACILITIES: ClassVar[dict[int, str]] = {2: "mail", 3: "daemon"}

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("/dev/log")
        os.chmod("/dev/log", 0o666)
        threading.Thread(target=self._receive, daemon=True).start()

    def _receive(self) -> None:
        while True:
            data = self.sock.recv(65536).decode(errors="replace")
            match = re.match(r"<(\d+)>(.*)", data, re.DOTALL)
            if match:
                priority = int(match.group(1))
                facility = self.FACILITIES.get(priority >> 3, str(priority >> 3))
                line = f"{facility}.{priority & 7} {match.group(2).rstrip()}\n"
                with self.path.open("a") as log:
                    log.write(line)


def _identity(process: subprocess.Popen[bytes]) -> dict[str, str]:
    status = Path(f"/proc/{process.pid}/status").read_text().splitlines()
    return {
        k: v.split()[0]
        for k, _, v in (line.partition(":\t") for line in status)
        if k in ("Uid", "Gid")
    }


def phase2(config_path: Path) -> None:
    config = json.loads(config_path.read_text())
    base = Path(config["base"])
    results = json.loads((base / "phase1.json").read_text())
    services = Services(base)
    mail_log = base / "mail.log"
    SyslogReceiver(mail_log)
    try:
        holder = _network()
        Path("/etc/resolv.conf").write_text("nameserver 127.0.0.1\n")  # dnsmasq, below
        _start_dns(services)
        _postfix()
        dumps = _sinks(base, holder)
        commands = config["commands"]
        last = max(i for i, c in enumerate(commands) if "pip install" in c)
        for command in commands[last + 1 :]:
            entry = run_command(command, services)
            results["commands"].append(entry)
            if entry["rc"] != 0:
                raise RuntimeError(f"README command failed: {json.dumps(entry, indent=1)}")
        results["daemons"] = {name: _identity(p) for name, p in services.daemons.items()}
        results["sockets"] = {
            p.name: {
                "mode": oct(p.stat().st_mode & 0o7777),
                "uid": p.stat().st_uid,
                "gid": p.stat().st_gid,
            }
            for p in Path("/var/spool/postfix/postwarden").iterdir()
        }
        results["service_uid"] = pwd.getpwnam("postwarden").pw_uid
        # The daemons take the last changes within a second: wait until they say so.
        wait_until(
            lambda: sh(["postwarden", "status"], check=False, env={"PATH": PATH}).returncode == 0,
            "postwarden status: all current",
        )
        wait_until(
            lambda: (
                mail_log.exists()
                and "DKIM keys in use: d=example.com s=postwarden" in mail_log.read_text()
            ),
            "the milter signing with the verified key",
        )
        results["mail"] = _mail(base, holder, dumps)
        wait_until(
            lambda: "NOQUEUE: reject: RCPT from" in mail_log.read_text(),
            "the decision in the mail log",
        )
        results["mail_log"] = mail_log.read_text()
    except Exception as exc:  # the test shows it, with the logs
        results["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        results["logs"] = {
            p.name: p.read_text(errors="replace")[-6000:] for p in base.glob("*.log")
        }
        results["logs"]["postfix.log"] = _log_since(0)[-6000:]
        Path(config["result"]).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    {"phase1": phase1, "phase2": phase2}[sys.argv[1]](Path(sys.argv[2]))
