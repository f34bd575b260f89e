"""``postwarden postfix-config [--apply]``: the main.cf/master.cf lines for this installation.

Prints each line with the reason for its value; ``--apply`` sets them with ``postconf``
(idempotent: running it again sets the same values). Postfix then needs ``postfix reload``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from postwarden import listeners
from postwarden.cli import _settings
from postwarden.cli._command import Command
from postwarden.cli._env import BadInput, Environment, ExitStatus
from postwarden.postfix.postconf import has_service, parameters, set_parameters
from postwarden.postfix.postscreen import cidr_table
from postwarden.postfix.wiring import (
    HANDBACK_LISTEN,
    LONG_LINES_NOTE,
    MILTER_MACROS,
    RECIPIENT_TABLES,
    Line,
    handback_wiring,
    milter_wiring,
    policyd_wiring,
    routing_wiring,
    signature_wiring,
)
from postwarden.settings.snapshot import compile_settings


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
        default=listeners.POLICY,
        metavar="ADDR",
        help="postwarden-policyd's policy listener (default %(default)s)",
    )
    parser.add_argument(
        "--socketmap",
        default=listeners.SOCKETMAP,
        metavar="ADDR",
        help="postwarden-policyd's socketmap listener (default %(default)s)",
    )
    parser.add_argument(
        "--components",
        default="policyd,milter",
        metavar="LIST",
        help="which daemons to wire: policyd, milter or both (default %(default)s)",
    )
    parser.add_argument(
        "--milter",
        default=listeners.MILTER,
        metavar="ADDR",
        help="postwarden-milter's listener (default %(default)s)",
    )
    parser.add_argument(
        "--handback-listen",
        default=HANDBACK_LISTEN,
        metavar="ADDR:PORT",
        help="the listener where routes hand mail back, delivered as addressed (default"
        " %(default)s; an address the routes can reach when they are other hosts)",
    )
    parser.add_argument(
        "--long-lines",
        choices=["break", "keep"],
        default="break",
        help="lines over 998 bytes after DKIM signing: break (Postfix's default: the"
        " signature fails) or keep (smtp_line_length_limit = 0: some receivers refuse them)",
    )
    parser.add_argument(
        "--postscreen-cidr",
        metavar="FILE",
        help="also write the IP lists as a postscreen_access_list cidr table to FILE",
    )
    parser.add_argument(
        "--submission-service",
        default="submission/inet",
        metavar="NAME/TYPE",
        help="the master.cf service of the submission listener (default %(default)s);"
        " with --apply it is skipped when master.cf has no such service",
    )


def _render(lines: list[Line], notes: list[str]) -> str:
    out = []
    for file, how in (
        ("main", "main.cf (postconf -e)"),
        ("service", "master.cf (postconf -M)"),
        ("master", "master.cf (postconf -P)"),
    ):
        out.append(f"# --- {how}")
        for line in (x for x in lines if x.file == file):
            out.append(f"# {line.why}")
            out.append(str(line))
    out += [f"# {note}" for note in notes]
    return "\n".join(out)


def _write_postscreen_table(env: Environment, path: Path) -> Line:
    loaded = _settings.load(env)
    table = cidr_table(compile_settings(loaded.settings))
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(table)
    tmp.chmod(0o644)
    os.replace(tmp, path)
    return Line(
        "main",
        "postscreen_access_list",
        f"permit_mynetworks, cidr:{path}",
        "postscreen's first line: allowed IPs skip its tests, IPs every hosted"
        " domain blocks are refused (cidr tables are read at start: postfix reload)",
    )


def _handback(env: Environment, listen: str, *, milter: bool) -> list[Line]:
    """The hand-back listener, open to loopback and the routes written as [address]."""
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise BadInput(f"--handback-listen {listen!r}: give ADDR:PORT")
    routes = _settings.load(env).settings.routes.values()
    networks = ["127.0.0.0/8", "[::1]/128"]
    networks += [f"[{r.address}]" if ":" in r.address else r.address for r in routes if r.address]
    lines = handback_wiring(listen=listen, networks=networks)
    if not milter:  # no postwarden milter wired: none on the hand-back listener either
        lines = [line for line in lines if not line.name.endswith("/smtpd_milters")]
    return lines


def run(env: Environment, args: argparse.Namespace) -> ExitStatus:
    config_dir = args.postfix_config_dir
    current = parameters(["smtpd_relay_restrictions", "queue_directory"], config_dir)
    as_written = [
        "smtpd_recipient_restrictions",
        "smtp_tls_policy_maps",
        "smtpd_milters",
        "non_smtpd_milters",
        "transport_maps",
        *RECIPIENT_TABLES,
        *MILTER_MACROS,
    ]
    current.update(parameters(as_written, config_dir, expand=False))
    components = set(args.components.replace(",", " ").split())
    if not components or components - {"policyd", "milter"}:
        raise BadInput(f"--components {args.components!r}: name policyd, milter or both")
    services = [args.service, args.submission_service]
    if args.apply:
        if not has_service(args.service, config_dir):
            raise BadInput(f"master.cf has no service {args.service} (see --service)")
        if "milter" in components and not has_service(args.submission_service, config_dir):
            env.note(
                f"master.cf has no service {args.submission_service}: the milter is"
                " attached to the port-25 listener only (see --submission-service)"
            )
            services.remove(args.submission_service)
    lines: list[Line] = []
    if "policyd" in components:
        lines += policyd_wiring(
            current, policy=args.policy, socketmap=args.socketmap, service=args.service
        )
        lines += routing_wiring(current, socketmap=args.socketmap, service=args.service)
    notes = []
    if "milter" in components:
        lines += milter_wiring(current, milter=args.milter, services=services)
        lines += signature_wiring(keep_long_lines=args.long_lines == "keep")
        if args.long_lines == "break":
            notes.append(LONG_LINES_NOTE)
    if "policyd" in components:
        lines += _handback(env, args.handback_listen, milter="milter" in components)
    if args.postscreen_cidr:
        lines.append(_write_postscreen_table(env, Path(args.postscreen_cidr)))
    if args.apply:
        for line in lines:
            set_parameters(line.postconf_argv(), config_dir)
    env.emit(
        {"lines": [vars(line) for line in lines], "notes": notes, "applied": args.apply},
        lambda: (
            _render(lines, notes) + ("\n# applied; now run: postfix reload" if args.apply else "")
        ),
    )
    return ExitStatus.OK


COMMAND = Command(
    "postfix-config",
    "print (or --apply) the main.cf/master.cf lines for postwarden",
    configure,
    run,
)
