"""``postwarden postfix-config [--apply]``: the main.cf/master.cf lines for this installation.

Prints each line with the reason for its value; ``--apply`` sets them with ``postconf``
(idempotent: running it again sets the same values). Postfix then needs ``postfix reload``.
"""

from __future__ import annotations

import argparse

from postwarden.cli._command import Command
from postwarden.cli._env import BadInput, Environment, ExitStatus
from postwarden.postfix.postconf import has_service, parameters, set_parameters
from postwarden.postfix.wiring import Line, policyd_wiring


def configure(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    parser.add_argument("--apply", action="store_true", help="set the lines with postconf")
    parser.add_argument("--postfix-config-dir", metavar="DIR", help="the Postfix instance")
    parser.add_argument(
        "--service",
        default="smtp/inet",
        metavar="NAME/TYPE",
        help="the master.cf service of the port-25 listener (default %(default)s)",
    )
    parser.add_argument(
        "--policy",
        default="inet:127.0.0.1:10040",
        metavar="ADDR",
        help="postwarden-policyd's policy listener (default %(default)s)",
    )
    parser.add_argument(
        "--socketmap",
        default="inet:127.0.0.1:10041",
        metavar="ADDR",
        help="postwarden-policyd's socketmap listener (default %(default)s)",
    )


def _render(lines: list[Line]) -> str:
    out = []
    for file, how in (("main", "main.cf (postconf -e)"), ("master", "master.cf (postconf -P)")):
        out.append(f"# --- {how}")
        for line in (x for x in lines if x.file == file):
            out.append(f"# {line.why}")
            out.append(str(line))
    return "\n".join(out)


def run(env: Environment, args: argparse.Namespace) -> ExitStatus:
    config_dir = args.postfix_config_dir
    current = parameters(["smtpd_relay_restrictions", "queue_directory"], config_dir)
    current.update(
        parameters(
            ["smtpd_recipient_restrictions", "smtp_tls_policy_maps"], config_dir, expand=False
        )
    )
    lines = policyd_wiring(
        current, policy=args.policy, socketmap=args.socketmap, service=args.service
    )
    if args.apply:
        if not has_service(args.service, config_dir):
            raise BadInput(f"master.cf has no service {args.service} (see --service)")
        for line in lines:
            set_parameters(line.postconf_argv(), config_dir)
    env.emit(
        {"lines": [vars(line) for line in lines], "applied": args.apply},
        lambda: _render(lines) + ("\n# applied; now run: postfix reload" if args.apply else ""),
    )
    return ExitStatus.OK


COMMAND = Command(
    "postfix-config",
    "print (or --apply) the main.cf/master.cf lines for postwarden",
    configure,
    run,
)
