"""``postwarden setup [--user U] [--dry-run]``: the service user, directories and units (root).

Description:
    Makes this server ready to run the daemons from the virtual environment this command
    runs in: the service user and group (``--user``, default postwarden), the settings
    directory and file (root:USER, 0750 and 0640), the state directory and all in it (USER,
    0750), a setgid socket directory in Postfix's queue directory (USER:postfix 2750, for
    sockets a chrooted smtpd reaches), and the systemd units of both daemons with this
    installation's real paths (``--unit-dir``, default /etc/systemd/system). It then prints
    the next steps with the exact commands. Each step is checked first: a second run changes
    nothing, and fixes what drifted. ``--dry-run`` says what it would do and does nothing.
    The layout and modes are those of :mod:`postwarden.deploy.layout`.

Errors:
    Not root (without ``--dry-run``), Postfix's configuration unreadable (name it with
    ``--postfix-config-dir``), a virtual environment the service user cannot run, a step
    that fails: a message naming it, exit 1.
"""

from __future__ import annotations

import argparse
import grp
import os
import pwd
import shlex
import sys
from pathlib import Path
from typing import Any

from postwarden import listeners
from postwarden.cli._command import Command
from postwarden.cli._env import BadInput, Environment, ExitStatus
from postwarden.deploy import layout, units
from postwarden.postfix.postconf import PostfixUnavailable, parameters
from postwarden.settings import paths
from postwarden.util import privileges

UNIT_DIR = Path("/etc/systemd/system")
_DONE = {"create": "created", "fix": "fixed", "write": "written"}


def configure(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--user",
        default=paths.SERVICE_USER,
        metavar="U",
        help="the service user (and group) the daemons run as (default %(default)s)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="say what would be done, change nothing"
    )
    parser.add_argument(
        "--postfix-config-dir",
        metavar="DIR",
        help="the Postfix instance whose queue directory gets the socket directory",
    )
    parser.add_argument(
        "--unit-dir",
        type=Path,
        default=UNIT_DIR,
        metavar="DIR",
        help="where the systemd units go (default %(default)s)",
    )


def _bindir() -> Path:
    """The bin/ of the environment this command runs in, with both daemons' scripts."""
    bindir = Path(sys.executable).parent
    for name in ("postwarden-policyd", "postwarden-milter"):
        if not os.access(bindir / name, os.X_OK):
            raise BadInput(
                f"{bindir / name} not found: run setup with the postwarden of the virtual"
                " environment the daemons are installed in (e.g. /opt/postwarden/bin/postwarden)"
            )
    return bindir


def _spool(config_dir: str | None) -> tuple[Path, str]:
    """Postfix's queue directory and the group of its mail owner."""
    try:
        values = parameters(["queue_directory", "mail_owner"], config_dir)
    except PostfixUnavailable as exc:
        raise BadInput(
            f"cannot read Postfix's configuration ({exc}): the socket directory belongs in"
            " its queue directory; install and configure Postfix first, or name the"
            " instance with --postfix-config-dir"
        ) from None
    try:
        group = grp.getgrgid(pwd.getpwnam(values["mail_owner"]).pw_gid).gr_name
    except KeyError:
        raise BadInput(f"Postfix's mail_owner {values['mail_owner']!r} does not exist") from None
    return Path(values["queue_directory"]), group


def _runnable(bindir: Path, user: str) -> None:
    """Refuse an environment the service user could not run (a venv under /root, say)."""
    try:
        account = privileges.account(user)
    except privileges.CannotDrop:
        account = privileges.Account(user, -1, -1)  # not made yet: what anyone may do
    blocked = privileges.blocked_for(bindir / "postwarden-policyd", account)
    if blocked is not None:
        raise BadInput(
            f"the service user {user} could not run {bindir / 'postwarden-policyd'}: {blocked}"
            " is closed to it; install postwarden where every user may read it, such as a"
            " virtual environment in /opt/postwarden"
        )


def _next_steps(env: Environment, install: units.Install, config_dir: str | None) -> list[str]:
    options = []
    if install.settings != paths.DEFAULT_SETTINGS:
        options += ["--settings", str(install.settings)]
    if install.state_dir != paths.DEFAULT_STATE_DIR:
        options += ["--state-dir", str(install.state_dir)]
    pw = shlex.join(["postwarden", *options])
    wiring = ["--policy", install.policy, "--socketmap", install.socketmap]
    wiring += ["--milter", install.milter]
    if config_dir:
        wiring += ["--postfix-config-dir", config_dir]
    steps = []
    if not install.settings.exists():
        steps.append(f"{pw} init YOUR-PRIMARY-DOMAIN")
    steps += [
        "systemctl daemon-reload",
        "systemctl enable --now postwarden-policyd postwarden-milter",
        f"{pw} postfix-config {shlex.join(wiring)}",
        f"{pw} postfix-config --apply {shlex.join(wiring)}",
        "systemctl reload postfix",
        f"{pw} status",
    ]
    return steps


def run(env: Environment, args: argparse.Namespace) -> ExitStatus:
    if not args.dry_run and not privileges.running_as_root():
        raise BadInput("setup must run as root (--dry-run shows what it would do)")
    bindir = _bindir()
    _runnable(bindir, args.user)
    queue_dir, postfix_group = _spool(args.postfix_config_dir)
    install = units.Install(
        bindir=bindir,
        user=args.user,
        settings=env.settings_path,
        state_dir=env.state_dir,
        socket_dir=queue_dir / listeners.SPOOL_SOCKET_DIR,
    )
    try:
        texts = units.render(install)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    steps = layout.plan(
        user=args.user,
        settings=install.settings,
        state_dir=install.state_dir,
        socket_dir=install.socket_dir,
        socket_group=postfix_group,
        units={args.unit_dir / name: text for name, text in texts.items()},
    )
    done: list[dict[str, Any]] = []
    for step in steps:
        wrong = step.check()
        if wrong is None:
            state = "ok"
        elif args.dry_run:
            state = f"would {step.verb}"
        else:
            step.apply()
            state = _DONE[step.verb]
        done.append({"what": step.what, "state": state, "was": wrong})
    next_steps = _next_steps(env, install, args.postfix_config_dir)
    data = {"dry_run": args.dry_run, "user": args.user, "steps": done, "next_steps": next_steps}

    def text() -> str:
        verb = "would set up" if args.dry_run else "set up"
        lines = [f"postwarden setup ({verb} for user {args.user}, from {bindir}):"]
        for entry in done:
            was = f"  (was: {entry['was']})" if entry["was"] not in (None, "missing") else ""
            lines.append(f"  {entry['state']:<14} {entry['what']}{was}")
        lines += ["", "Next steps:"]
        lines += [f"  {command}" for command in next_steps]
        return "\n".join(lines)

    env.emit(data, text)
    return ExitStatus.OK


COMMAND = Command(
    "setup",
    "create the service user, directories and systemd units of this installation (root)",
    configure,
    run,
)
