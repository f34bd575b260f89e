"""The ``postwarden`` command line: one module per subcommand, one dispatch table.

Description:
    :func:`main` builds the parser from :data:`COMMANDS`, runs the chosen command with an
    :class:`~postwarden.cli._env.Environment`, and is the single place where exceptions
    become messages and exit statuses: 0 done, 1 refused (bad input, invalid settings, a
    change that would break a rule), 2 a malformed command line. ``--traceback`` shows the
    Python traceback of an unexpected error instead of the one-line message.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence

from postwarden import __version__
from postwarden.cli import (
    check,
    dkim,
    domain,
    explain,
    gateway,
    history,
    init,
    iplist,
    postfix_config,
    route,
    routing,
    setup,
    spam_rule,
    status,
    store,
    tls,
    web_user,
    what_if,
)
from postwarden.cli._command import Command
from postwarden.cli._env import Environment, ExitStatus
from postwarden.errors import PostwardenError
from postwarden.settings.load import SettingsInvalid
from postwarden.store import redact

COMMANDS: tuple[Command, ...] = (
    init.COMMAND,
    check.COMMAND,
    domain.COMMAND,
    iplist.ALLOW,
    iplist.BLOCK,
    gateway.COMMAND,
    spam_rule.COMMAND,
    tls.COMMAND,
    dkim.COMMAND,
    route.COMMAND,
    routing.COMMAND,
    explain.COMMAND,
    what_if.COMMAND,
    history.COMMAND,
    status.COMMAND,
    store.COMMAND,
    postfix_config.COMMAND,
    web_user.COMMAND,
    setup.COMMAND,
)


def _common_options(*, top: bool) -> argparse.ArgumentParser:
    """Options every command takes, before or after the command name.

    Below the top level they default to SUPPRESS, so that a value given before the command
    name is not overwritten by the sub-parser's default.
    """

    def default(value: object) -> object:
        return value if top else argparse.SUPPRESS

    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("common options")
    group.add_argument(
        "--json", action="store_true", default=default(False), help="machine-readable output"
    )
    group.add_argument(
        "--settings",
        metavar="FILE",
        default=default(None),
        help="settings file (env POSTWARDEN_SETTINGS; default /etc/postwarden/settings.yaml)",
    )
    group.add_argument(
        "--store",
        metavar="URL",
        default=default(None),
        help="file: (the settings file and state directory; the default) or"
        " postgresql://... shared by a fleet (env POSTWARDEN_STORE)",
    )
    group.add_argument(
        "--state-dir",
        metavar="DIR",
        default=default(None),
        help="state directory (env POSTWARDEN_STATE_DIR; default /var/lib/postwarden)",
    )
    group.add_argument(
        "--traceback",
        action="store_true",
        default=default(False),
        help="show the traceback of an unexpected error",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="postwarden",
        description="Send/Receive settings for Postfix: IP lists, gateway, routing, DKIM and"
        " TLS policies, per hosted domain.",
        parents=[_common_options(top=True)],
    )
    parser.add_argument("--version", action="version", version=f"postwarden {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    common = _common_options(top=False)
    for command in COMMANDS:
        command_parser = sub.add_parser(
            command.name,
            help=command.help,
            description=command.description or command.help,
            parents=[common],
        )
        command.configure(command_parser, common)
        command_parser.set_defaults(run=command.run)
    return parser


def main(argv: Sequence[str] | None = None, env: Environment | None = None) -> int:
    env = env or Environment()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help, --version, or a usage error
        return int(exc.code or 0)
    env.configure(args.settings, args.state_dir, args.json, args.store)
    given = argv if argv is not None else sys.argv[1:]
    env.command = shlex.join(["postwarden", *(redact(token) for token in given)])
    try:
        return int(args.run(env, args))
    except SettingsInvalid as exc:
        return _fail(env, "invalid settings", [str(f) for f in exc.findings if not f.warning])
    except PostwardenError as exc:
        return _fail(env, str(exc))
    except OSError as exc:
        if args.traceback:
            raise
        return _fail(env, f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "))
    except KeyboardInterrupt:
        return 130


def _fail(env: Environment, message: str, details: Sequence[str] = ()) -> int:
    if env.json:
        env.emit({"error": message, "problems": list(details)}, "")
    env.stderr.write(f"postwarden: error: {message}\n")
    for line in details:
        env.stderr.write(f"  {line}\n")
    return ExitStatus.ERROR


if __name__ == "__main__":
    sys.exit(main())
