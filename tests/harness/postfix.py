"""A private, throw-away Postfix instance on loopback for integration tests.

Description:
    PostfixInstance writes its own main.cf and master.cf into a fresh base directory under /tmp
    and runs the Debian Postfix with `postfix -c DIR start` (as root). Nothing is shared with
    the system instance: config, queue, data directory, Maildirs and log file all live under
    the base directory, which is mode 0755 so the postfix user and the postwarden service user
    can traverse it (pytest's tmp_path is 0700).

    Two smtpd listeners on free 127.0.0.1 ports: "mx" (the port-25 role) and "submission"
    (SASL switched on, so XCLIENT LOGIN counts as authenticated). Hosted domains are
    virtual(8) mailbox domains delivered into Maildirs; other domains go to `error:` unless a
    test routes them (transport table, e.g. to a sink). No DNS at all; short queue back-off
    times so deferral-and-retry tests take seconds.

    `hosts` gives the instance a private /etc/hosts (names -> loopback addresses): Postfix is
    then started in its own mount namespace with that file bind-mounted over /etc/hosts, so
    mail can be delivered by domain name (and TLS policies looked up by domain, certificates
    matched against host names) without DNS and without touching the machine's files.

Settings read:
    Postfix main.cf parameters written here; see _base_main_cf(). Tests change them with
    postconf() and per-listener `-o` overrides with set_listener_options(); both reload.

Errors:
    PostfixStartError (with `postfix start` output and the instance log) when Postfix does not
    start; PostfixError when a Postfix command fails; TimeoutError from the wait_* helpers.

Security:
    Listens on 127.0.0.1 only; mynetworks is 127.0.0.1/32 and only 127.0.0.1 may use XCLIENT.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from .service_user import CLEAN_PATH, free_port, wait_for_port
from .tlsca import CertFiles
from .wait import wait_until

DEFAULT_HOSTED: Mapping[str, Sequence[str]] = {"hosted.test": ("alice", "bob")}
LISTENERS = ("mx", "submission")
_ENV = {"PATH": CLEAN_PATH, "LANG": "C"}
_RELOADED = r"postfix/master\[\d+\]: reload -- version"

# Debian's master.cf daemons, all with chroot = n (a private instance has no chroot jail).
_MASTER_SERVICES = """\
pickup     unix  n - n 60    1 pickup
cleanup    unix  n - n -     0 cleanup
qmgr       unix  n - n 300   1 qmgr
tlsmgr     unix  - - n 1000? 1 tlsmgr
rewrite    unix  - - n -     - trivial-rewrite
bounce     unix  - - n -     0 bounce
defer      unix  - - n -     0 bounce
trace      unix  - - n -     0 bounce
verify     unix  - - n -     1 verify
flush      unix  n - n 1000? 0 flush
proxymap   unix  - - n -     - proxymap
proxywrite unix  - - n -     1 proxymap
smtp       unix  - - n -     - smtp
relay      unix  - - n -     - smtp
showq      unix  n - n -     - showq
error      unix  - - n -     - error
retry      unix  - - n -     - error
discard    unix  - - n -     - discard
local      unix  - n n -     - local
virtual    unix  - n n -     - virtual
lmtp       unix  - - n -     - lmtp
anvil      unix  - - n -     1 anvil
scache     unix  - - n -     1 scache
postlog    unix-dgram n - n - 1 postlogd
"""


class PostfixError(RuntimeError):
    """A Postfix command failed."""


class PostfixStartError(PostfixError):
    """Postfix did not start; the message has its output and the instance log."""


@dataclass(frozen=True)
class DeliveredMessage:
    """A message virtual(8) delivered into a Maildir."""

    path: Path
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        msg = email.message_from_bytes(self.raw, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        return msg


class PostfixInstance:
    """A private Postfix instance; use as a context manager or call start()/close()."""

    def __init__(
        self,
        *,
        hosted: Mapping[str, Sequence[str]] = DEFAULT_HOSTED,
        relay_domains: Sequence[str] = (),
        routes: Mapping[str, str] | None = None,
        main_cf: Mapping[str, str] | None = None,
        listener_options: Mapping[str, Mapping[str, str]] | None = None,
        smtpd_tls: CertFiles | None = None,
        hostname: str = "mx.harness.test",
        hosts: Mapping[str, str] | None = None,
        base: Path | None = None,
        ports: Mapping[str, int] | None = None,
    ) -> None:
        """*base*: a new directory to live in (default: one under /tmp); *ports*: the
        listeners' ports by name, and "handback" for postwarden's hand-back listener (default:
        free ones)."""
        if base is None:
            base = Path(tempfile.mkdtemp(prefix="pw-postfix-", dir="/tmp"))
        else:
            base.mkdir(parents=True)
        self.base = base
        self.base.chmod(0o755)
        self.config_dir = self.base / "etc"
        self.queue_dir = self.base / "spool"
        self.data_dir = self.base / "data"
        self.mail_dir = self.base / "mail"
        self.log_file = self.base / "maillog"
        self.hosted = {domain: tuple(users) for domain, users in hosted.items()}
        self.routes = dict(routes or {})
        self.ports = dict(ports) if ports else {name: free_port() for name in LISTENERS}
        # for postwarden's hand-back listener, once wired
        self.handback_port = self.ports.pop("handback", None) or free_port()
        self.listener_options: dict[str, dict[str, str]] = {
            "mx": {},
            "submission": {"syslog_name": "postfix/submission", "smtpd_sasl_auth_enable": "yes"},
        }
        for name, options in (listener_options or {}).items():
            self.listener_options[name].update(options)
        self._make_directories()
        self.hosts_file: Path | None = None
        if hosts:
            self.hosts_file = self.base / "hosts"
            self.hosts_file.write_text(
                "127.0.0.1 localhost\n"
                + "".join(f"{address} {name}\n" for name, address in hosts.items())
            )
        params = self._base_main_cf(hostname, relay_domains, smtpd_tls)
        params.update(main_cf or {})
        self._write_main_cf(params)
        self._write_master_cf()

    # -- layout and configuration -------------------------------------------------------

    @property
    def mx_port(self) -> int:
        return self.ports["mx"]

    @property
    def submission_port(self) -> int:
        return self.ports["submission"]

    def _make_directories(self) -> None:
        """Config and queue owned by root; data and Maildir base owned by postfix."""
        postfix = pwd.getpwnam("postfix")
        for directory in (self.config_dir, self.queue_dir, self.data_dir, self.mail_dir):
            directory.mkdir(mode=0o755)
        for directory in (self.data_dir, self.mail_dir):
            os.chown(directory, postfix.pw_uid, postfix.pw_gid)

    def _base_main_cf(
        self, hostname: str, relay_domains: Sequence[str], smtpd_tls: CertFiles | None
    ) -> dict[str, str]:
        """main.cf of the instance: private paths, no DNS, loopback only, short back-off."""
        postfix = pwd.getpwnam("postfix")
        no_route = "error:5.4.4 no route in the test harness"
        params = {
            "compatibility_level": "3.6",
            "queue_directory": str(self.queue_dir),
            "data_directory": str(self.data_dir),
            "maillog_file": str(self.log_file),
            "maillog_file_prefixes": str(self.base),
            "myhostname": hostname,
            "mydomain": "harness.test",
            "myorigin": "$myhostname",
            "mydestination": "",
            "alias_maps": "",
            "alias_database": "",
            "biff": "no",
            "append_dot_mydomain": "no",
            "inet_interfaces": "loopback-only",
            "inet_protocols": "all",
            "mynetworks": "127.0.0.1/32",
            "smtpd_authorized_xclient_hosts": "127.0.0.1",
            "smtpd_peername_lookup": "no",
            "smtp_dns_support_level": "disabled",
            "lmtp_dns_support_level": "disabled",
            "smtp_host_lookup": "native",
            "lmtp_host_lookup": "native",
            "default_transport": no_route,
            "relay_transport": no_route,
            "relay_domains": " ".join(relay_domains),
            "smtpd_relay_restrictions": (
                "permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination"
            ),
            "transport_maps": self.table("transport", self.routes),
            "virtual_mailbox_domains": " ".join(self.hosted),
            "virtual_mailbox_maps": self.table("vmailbox", self._mailbox_entries()),
            "virtual_mailbox_base": str(self.mail_dir),
            "virtual_minimum_uid": "1",
            "virtual_uid_maps": f"static:{postfix.pw_uid}",
            "virtual_gid_maps": f"static:{postfix.pw_gid}",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "2s",
            "queue_run_delay": "1s",
            "smtp_connection_cache_on_demand": "no",
            "smtp_tls_loglevel": "1",
            "smtpd_tls_loglevel": "1",
        }
        if smtpd_tls is not None:
            params.update(
                smtpd_tls_cert_file=str(smtpd_tls.cert),
                smtpd_tls_key_file=str(smtpd_tls.key),
                smtpd_tls_security_level="may",
            )
        return params

    def _mailbox_entries(self) -> dict[str, str]:
        return {
            f"{user}@{domain}": f"{domain}/{user}/"
            for domain, users in self.hosted.items()
            for user in users
        }

    def _write_main_cf(self, params: Mapping[str, str]) -> None:
        text = "".join(f"{name} = {value}\n" for name, value in params.items())
        _write_settled(self.config_dir / "main.cf", text)

    def _write_master_cf(self) -> None:
        lines = []
        for name in LISTENERS:
            lines.append(f"127.0.0.1:{self.ports[name]} inet n - n - - smtpd")
            options = self.listener_options[name].items()
            lines += [f"  -o {_master_option(k, v)}" for k, v in options]
        _write_settled(self.config_dir / "master.cf", "\n".join(lines) + "\n" + _MASTER_SERVICES)

    def table(self, name: str, entries: Mapping[str, str]) -> str:
        """Write a texthash table etc/NAME; return its "texthash:PATH" for main.cf.

        texthash tables are read once per process: reload() after changing one.
        """
        path = self.config_dir / name
        _write_settled(path, "".join(f"{key} {value}\n" for key, value in entries.items()))
        return f"texthash:{path}"

    def set_route(self, domain: str, nexthop: str | None) -> None:
        """Route `domain` to `nexthop` (e.g. "smtp:[127.0.0.1]:2525"), None removes it."""
        if nexthop is None:
            self.routes.pop(domain, None)
        else:
            self.routes[domain] = nexthop
        self.table("transport", self.routes)
        self._reload_if_running()

    def postconf(self, params: Mapping[str, str], *, reload: bool = True) -> None:
        """Set main.cf parameters with `postconf -e`, then reload a running instance."""
        self._postfix_cmd("postconf", "-e", *(f"{k}={v}" for k, v in params.items()))
        _backdate(self.config_dir / "main.cf")
        if reload:
            self._reload_if_running()

    def postconf_master(self, *settings: str, reload: bool = True) -> None:
        """Set master.cf lines: `service/type=line` with `postconf -M`, overrides
        `service/type/name=value` with `postconf -P`; then reload."""
        for setting in settings:
            flag = "-M" if setting.partition("=")[0].count("/") == 1 else "-P"
            self._postfix_cmd("postconf", flag, setting)
        _backdate(self.config_dir / "master.cf")
        if reload:
            self._reload_if_running()

    def postconf_get(self, name: str) -> str:
        """The value of one main.cf parameter (as written, not expanded)."""
        return self._postfix_cmd("postconf", "-h", name).stdout.rstrip("\n")

    def set_listener_options(self, listener: str, options: Mapping[str, str | None]) -> None:
        """Change master.cf `-o` overrides of a listener (None removes one); reload."""
        current = self.listener_options[listener]
        for name, value in options.items():
            if value is None:
                current.pop(name, None)
            else:
                current[name] = value
        self._write_master_cf()
        self._reload_if_running()

    # -- life cycle ------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        pid = self._master_pid()
        return pid is not None and _alive(pid)

    def start(self) -> None:
        """Start Postfix; on failure stop leftovers and raise PostfixStartError with the log."""
        if self.running:
            return
        done = self._postfix_cmd("postfix", "start", check=False, private_hosts=True)
        if done.returncode != 0 or not self.running:
            self._kill_leftovers()
            raise PostfixStartError(self._report("postfix start", done))
        for port in self.ports.values():
            wait_for_port("127.0.0.1", port)

    def reload(self, timeout: float = 10.0) -> None:
        """`postfix reload`, returning once no process with the old configuration is left.

        The master logs "reload" before it re-reads its files and closes the status pipes of
        its children; each child (idle smtpd included) exits when it sees that, but until then
        it may still accept one more connection with the old settings. So wait for the log
        line, then for every child that existed before the reload to be gone.
        """
        master = self._master_pid()
        old_children = [pid for pid in self.pids() if pid != master]
        mark = self.log_mark()
        self._postfix_cmd("postfix", "reload")
        self.wait_for_log(_RELOADED, timeout=timeout, since=mark)
        wait_until(
            lambda: not any(_alive(pid) for pid in old_children),
            "no process with the old configuration (an open SMTP session across a reload?)",
            timeout,
            interval=0.005,
        )

    def _reload_if_running(self) -> None:
        if self.running:
            self.reload()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop Postfix and wait until all its processes are gone (SIGKILL as a last resort).

        This is what `postfix stop` does (SIGTERM to the master, which terminates its
        children), minus postfix-script's poll in whole seconds that costs 1 s per stop.
        """
        pids = self.pids()
        master = self._master_pid()
        if master is not None and _alive(master):
            os.kill(master, signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: not any(_alive(pid) for pid in pids), "Postfix stopped", timeout)
        self._kill_leftovers()

    def close(self) -> None:
        """Stop and remove the base directory."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> PostfixInstance:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _master_pid(self) -> int | None:
        try:
            return int((self.data_dir / "master.lock").read_text().split()[0])
        except (FileNotFoundError, IndexError, ValueError):
            return None

    def pids(self) -> list[int]:
        """Live processes of this instance: they carry MAIL_CONFIG=<our config_directory>."""
        marker = f"MAIL_CONFIG={self.config_dir}".encode()
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                environ = (entry / "environ").read_bytes()
            except OSError:
                continue
            if marker in environ.split(b"\0"):
                pids.append(int(entry.name))
        return pids

    def _kill_leftovers(self) -> None:
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue

    def _postfix_cmd(
        self, command: str, *args: str, check: bool = True, private_hosts: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Run a Postfix command with `-c config_dir`; if `check`, raise PostfixError on failure.

        With `private_hosts` and a hosts file, the command (and every daemon it starts) runs
        in a new mount namespace where that file is /etc/hosts.
        """
        argv = [command, "-c", str(self.config_dir), *args]
        if private_hosts and self.hosts_file is not None:
            argv = [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                'mount --bind "$0" /etc/hosts && exec "$@"',
                str(self.hosts_file),
                *argv,
            ]
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=_ENV,
            timeout=30,
            check=False,
        )
        if check and done.returncode != 0:
            raise PostfixError(self._report(" ".join(argv), done))
        return done

    def _report(self, what: str, done: subprocess.CompletedProcess[str]) -> str:
        return (
            f"{what}: exit {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}\n"
            f"--- {self.log_file} ---\n{self.log_text()}"
        )

    # -- queue -------------------------------------------------------------------------------

    def queue(self) -> list[dict[str, Any]]:
        """The queue as `postqueue -j` reports it: one dict per message."""
        out = self._postfix_cmd("postqueue", "-j").stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def queue_ids(self) -> list[str]:
        return [entry["queue_id"] for entry in self.queue()]

    def flush(self) -> None:
        """`postqueue -f`: deliver all deferred mail now, ignoring back-off times."""
        self._postfix_cmd("postqueue", "-f")

    def wait_until_queue_empty(self, timeout: float = 10.0) -> None:
        wait_until(lambda: not self.queue(), "the queue empty", timeout, interval=0.1)

    # -- mailboxes ---------------------------------------------------------------------------

    def mailbox(self, address: str) -> list[DeliveredMessage]:
        """Messages in the Maildir of a hosted address (new/ and cur/), oldest first."""
        user, domain = address.rsplit("@", 1)
        maildir = self.mail_dir / domain / user
        files = [
            p
            for sub in ("new", "cur")
            if (maildir / sub).is_dir()
            for p in (maildir / sub).iterdir()
        ]
        files.sort(key=lambda p: p.name)
        return [DeliveredMessage(path=p, raw=p.read_bytes()) for p in files]

    def wait_for_mailbox(
        self, address: str, count: int = 1, timeout: float = 10.0
    ) -> list[DeliveredMessage]:
        """Wait until the Maildir of `address` holds at least `count` messages."""
        try:
            return wait_until(
                lambda: (found,) if len(found := self.mailbox(address)) >= count else None,
                f"{count} messages for {address}",
                timeout,
            )[0]
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n{self.log_tail()}") from None

    # -- log ---------------------------------------------------------------------------------

    def log_text(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_mark(self) -> int:
        """A position in the log; pass it to log_since() or wait_for_log(since=...)."""
        try:
            return self.log_file.stat().st_size
        except FileNotFoundError:
            return 0

    def log_since(self, mark: int) -> str:
        try:
            with self.log_file.open("rb") as f:
                f.seek(mark)
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def wait_for_log(
        self, pattern: str | re.Pattern[str], timeout: float = 10.0, since: int = 0
    ) -> re.Match[str]:
        """Wait until a log line after `since` matches `pattern` (re.MULTILINE); return it."""
        regex = re.compile(pattern, re.MULTILINE) if isinstance(pattern, str) else pattern
        try:
            return wait_until(
                lambda: regex.search(self.log_since(since)),
                f"a log line matching {regex.pattern!r}",
                timeout,
            )
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n{self.log_tail()}") from None


def _write_settled(path: Path, text: str) -> None:
    """Write a config file and backdate it (see _backdate)."""
    path.write_text(text)
    _backdate(path)


def _backdate(path: Path) -> None:
    """Set the mtime a minute back.

    Postfix re-reads a "hot" main.cf or texthash table: while its mtime is not older than one
    second before the read began, it dozes 300 ms and reads again (src: util/dict.c
    dict_load_file_xt, util/dict_thash.c "pausing to let file %s cool down"). Without this,
    every command and daemon started in the two seconds after a change stalls for ~2 s.
    """
    when = time.time() - 60
    os.utime(path, (when, when))


def _master_option(name: str, value: str) -> str:
    """One master.cf `-o` value; the `{ name = value }` form when the value has blanks."""
    return f"{{ {name} = {value} }}" if re.search(r"\s", value) else f"{name}={value}"


def _alive(pid: int) -> bool:
    """True if `pid` exists and is not a zombie (a dead child nobody reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
