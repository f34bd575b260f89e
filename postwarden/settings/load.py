"""Read and write the settings file: YAML text to validated :class:`Settings` and back.

Description:
    Reading composes the YAML into a node tree (libyaml when available), reads it through the
    schema, runs the cross-setting checks and resolves every problem to a line of the file,
    so ``postwarden check`` reports **all** of them as ``FILE:LINE: setting: message``.
    Writing emits a canonical YAML document; the command line writes through this, then reads
    the result back through the same path, so a file it wrote is always one it accepts.

    Every document written ends with YAML's explicit document end, ``...``, on its last line.
    A file cut short (``truncate``, an editor or a writer that died mid-write) loses it: the
    daemons then refuse the file if the settings they run with had it (see
    :class:`~postwarden.settings.source.SnapshotSource`). A cut at a line boundary can
    leave valid YAML with a domain or a list missing; the marker is what tells.

Errors:
    :class:`SettingsInvalid` carries every finding; warnings never fail a file.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import yaml

from postwarden.errors import PostwardenError
from postwarden.settings.checks import check_settings
from postwarden.settings.model import Settings
from postwarden.settings.schema import Path, Problem, Record, Report

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
SETTINGS_RECORD = Record(Settings)

HEADER = (
    "# postwarden settings. Validate with: postwarden check FILE\n"
    "# postwarden commands rewrite this file in this layout; keep notes in `note:` fields,\n"
    "# other comments are not kept. Keep the last line, '...': a file that loses it looks\n"
    "# cut short, and the daemons keep their last good settings.\n"
)
DOCUMENT_END = "..."


@dataclass(frozen=True)
class Finding:
    """A problem located in a file: ``source:line: setting: message``.

    Line 0 means "not in a file" (a refused change): only ``setting: message`` is shown.
    """

    source: str
    line: int
    setting: str
    message: str
    warning: bool = False

    def __str__(self) -> str:
        kind = "warning: " if self.warning else ""
        where = f"{self.setting}: " if self.setting else ""
        if not self.line:
            return f"{kind}{where}{self.message}"
        return f"{self.source}:{self.line}: {kind}{where}{self.message}"


class SettingsInvalid(PostwardenError):
    """The settings are invalid."""

    def __init__(self, findings: list[Finding]) -> None:
        self.findings = findings
        errors = [f for f in findings if not f.warning]
        super().__init__("\n".join(str(f) for f in errors) or self.__doc__)


@dataclass(frozen=True)
class Loaded:
    """Valid settings, what was said about them, and a digest of the exact bytes."""

    settings: Settings
    warnings: list[Finding]
    digest: str
    complete: bool = False  # ends with the document end marker "..."


def load_text(data: str | bytes, source: str) -> Loaded:
    """Validate settings text; raise :class:`SettingsInvalid` listing every problem."""
    raw = data.encode() if isinstance(data, str) else data
    digest = hashlib.sha256(raw).hexdigest()
    try:
        root = yaml.compose(raw, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark else 1
        problem = getattr(exc, "problem", None) or str(exc)
        raise SettingsInvalid([Finding(source, line, "", f"not valid YAML: {problem}")]) from None
    if root is None:
        raise SettingsInvalid([Finding(source, 1, "", "the file is empty")])
    report = Report()
    settings = SETTINGS_RECORD.read(root, (), report)
    if isinstance(settings, Settings):
        check_settings(settings, report)
    findings = sorted(
        (_locate(problem, root, source) for problem in report.problems), key=lambda f: f.line
    )
    if report.errors or not isinstance(settings, Settings):
        raise SettingsInvalid(findings)
    return Loaded(settings, findings, digest, ends_with_document_end(raw))


def ends_with_document_end(raw: bytes) -> bool:
    """Whether the last line that is not blank or a comment is ``...``."""
    for line in reversed(raw.splitlines()):
        text = line.strip()
        if text and not text.startswith(b"#"):
            return text == DOCUMENT_END.encode()
    return False


def dump(settings: Settings) -> str:
    """The canonical YAML text of *settings*."""
    data = SETTINGS_RECORD.to_data(settings)
    body = yaml.dump(
        data,
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=100,
    )
    return f"{HEADER}{body}{DOCUMENT_END}\n"


def _locate(problem: Problem, root: yaml.Node, source: str) -> Finding:
    line = problem.line or _line_of(root, problem.path)
    return Finding(source, line, problem.where(), problem.message, problem.warning)


def _line_of(node: yaml.Node, path: Path) -> int:
    """The 1-based line of the deepest node along *path* (a missing key: its parent's)."""
    line = node.start_mark.line
    for part in path:
        child = None
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            for key_node, value_node in node.value:
                key = str(key_node.value)
                if key == part or key.lower().rstrip(".") == part:
                    line, child = key_node.start_mark.line, value_node
                    break
        elif (
            isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value)
        ):
            child = node.value[part]
            line = child.start_mark.line
        if child is None:
            break
        node = child
    return line + 1
