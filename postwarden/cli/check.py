"""``postwarden check [FILE] [--postfix] [--dns]``: validate a settings file.

``--dns`` also looks up the MX records of every domain that receives only from its gateway
and warns when they point elsewhere (mail sent there would be refused).

Exit status 0 when the file is valid (warnings allowed), 1 when it is not. Every problem is
printed as ``FILE:LINE: setting: message``, so editors and CI logs can jump to it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from postwarden.cli._command import Command
from postwarden.cli._env import Environment, ExitStatus
from postwarden.mx.gateway import gateway_warnings
from postwarden.postfix.domains import compare_hosted, handback_listener_missing, relay_bypass
from postwarden.settings.load import Finding, SettingsInvalid, load_text
from postwarden.settings.model import Settings
from postwarden.settings.snapshot import compile_settings, hosted_domains


def configure(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", nargs="?", help="default: the settings file")
    parser.add_argument(
        "--postfix",
        action="store_true",
        help="also compare the hosted domains with Postfix's address classes",
    )
    parser.add_argument(
        "--postfix-config-dir", metavar="DIR", help="the Postfix instance to compare with"
    )
    parser.add_argument(
        "--dns",
        action="store_true",
        help="also look up the MX of gateway-only domains: do they point at the gateway?",
    )


def _as_json(finding: Finding) -> dict[str, object]:
    return {"line": finding.line, "setting": finding.setting, "message": finding.message}


def run(env: Environment, args: argparse.Namespace) -> ExitStatus:
    if args.file:
        data, path = Path(args.file).read_bytes(), str(Path(args.file))
    else:
        data, path = env.store().document()
    try:
        loaded = load_text(data, str(path))
    except SettingsInvalid as exc:
        findings = exc.findings
        errors = [f for f in findings if not f.warning]
        warnings = [f for f in findings if f.warning]
        env.emit(
            {
                "file": str(path),
                "valid": False,
                "errors": [_as_json(f) for f in errors],
                "warnings": [_as_json(f) for f in warnings],
            },
            lambda: (
                "\n".join(str(f) for f in findings)
                + f"\n{path}: invalid: {len(errors)} error(s), {len(warnings)} warning(s)"
            ),
        )
        return ExitStatus.ERROR
    postfix_warnings: list[str] = []
    if args.postfix:
        settings, config_dir = loaded.settings, args.postfix_config_dir
        postfix_warnings = compare_hosted(hosted_domains(settings), config_dir)
        postfix_warnings += relay_bypass(any(settings.outgoing_tls_policies()), config_dir)
        postfix_warnings += handback_listener_missing(settings, config_dir)
    dns_warnings = _dns_warnings(loaded.settings) if args.dns else []
    count = len(loaded.warnings) + len(postfix_warnings) + len(dns_warnings)
    env.emit(
        {
            "file": str(path),
            "valid": True,
            "errors": [],
            "warnings": [_as_json(f) for f in loaded.warnings]
            + [{"line": 0, "setting": "postfix", "message": w} for w in postfix_warnings]
            + [{"line": 0, "setting": "dns", "message": w} for w in dns_warnings],
        },
        lambda: (
            "".join(f"{f}\n" for f in loaded.warnings)
            + "".join(f"{path}: warning: postfix: {w}\n" for w in postfix_warnings)
            + "".join(f"{path}: warning: dns: {w}\n" for w in dns_warnings)
            + f"{path}: valid ({count} warning(s))"
        ),
    )
    return ExitStatus.OK


def _dns_warnings(settings: Settings) -> list[str]:
    """``--dns``: gateway-only domains whose MX points elsewhere."""
    return gateway_warnings(
        compile_settings(settings),
        nameserver=settings.dns.nameserver or None,
        timeout=float(settings.dns.timeout),
    )


COMMAND = Command("check", "validate a settings file (exit 0 valid, 1 invalid)", configure, run)
