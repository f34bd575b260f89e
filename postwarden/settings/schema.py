"""The building blocks of the settings schema: typed kinds that read YAML nodes.

Description:
    Every setting is declared once, as a dataclass field in :mod:`postwarden.settings.model`
    carrying a *kind* from this module, its default and a one-line doc (:func:`setting`).
    A kind knows how to read a YAML node (reporting every problem with its path, never stopping
    at the first), how to write a value back out, and how to describe itself for the generated
    settings reference. Unknown keys, wrong types and limits are all reported here; rules that
    span several settings live in :mod:`postwarden.settings.checks`.

Errors:
    Problems go to a :class:`Report`; a kind returns :data:`INVALID` for a value it refused.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from postwarden.util.idn import BadDomainName, to_a_label
from postwarden.util.iptable import BadIpEntry, IpRange, parse_range

Path = tuple[str | int, ...]

_STR, _BOOL, _INT, _NULL = (f"tag:yaml.org,2002:{t}" for t in ("str", "bool", "int", "null"))


class _Invalid:
    """Marker for a value that was refused (its problem is already reported)."""

    def __repr__(self) -> str:
        return "INVALID"


INVALID: Any = _Invalid()


@dataclass(frozen=True)
class Problem:
    """One finding about a settings file: where, what, and whether it fails the file."""

    path: Path
    message: str
    warning: bool = False
    line: int = 0  # set when the path alone cannot tell (a key given twice)

    def where(self) -> str:
        """The dotted path of the setting, e.g. ``domains.example.com.allowed_ips[3]``."""
        text = ""
        for part in self.path:
            text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
        return text


class Report:
    """Collects problems while a settings tree is read."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def error(self, path: Path, message: str, node: yaml.Node | None = None) -> Any:
        line = node.start_mark.line + 1 if node is not None else 0
        self.problems.append(Problem(path, message, line=line))
        return INVALID

    def warn(self, path: Path, message: str) -> None:
        self.problems.append(Problem(path, message, warning=True))

    def has_errors_under(self, path: Path) -> bool:
        return any(not p.warning and p.path[: len(path)] == path for p in self.problems)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if not p.warning]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.warning]


def setting(kind: Kind, default: Any, doc: str, *, required: bool = False) -> Any:
    """Declare one setting: its kind, default and one-line doc, all in one place.

    A mapping default is copied per instance (dataclasses refuse shared mutable defaults).
    """
    metadata = {"kind": kind, "doc": doc, "required": required}
    if isinstance(default, dict):
        return dataclasses.field(default_factory=default.copy, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _what(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return {_NULL: "empty", _BOOL: "a boolean", _INT: "a number"}.get(node.tag, f"{node.value!r}")


class Kind:
    """How one setting is read from YAML, written back and documented."""

    description = "value"

    def read(self, node: yaml.Node, path: Path, report: Report) -> Any:
        raise NotImplementedError

    def to_data(self, value: Any) -> Any:
        return value

    def from_text(self, text: str) -> Any:
        """Read a value typed on the command line; raises ``ValueError`` naming the token."""
        report = Report()
        value = self.read(yaml.ScalarNode(getattr(self, "tag", _STR), text), (), report)
        if report.errors:
            raise ValueError(report.errors[0].message)
        return value


class Scalar(Kind):
    """Plain scalar kinds share the type check."""

    tag = _STR

    def read(self, node: yaml.Node, path: Path, report: Report) -> Any:
        if not isinstance(node, yaml.ScalarNode) or node.tag != self.tag:
            return report.error(path, f"expected {self.description}, got {_what(node)}")
        return self.convert(node.value, path, report)

    def convert(self, text: str, path: Path, report: Report) -> Any:
        return text


class Bool(Scalar):
    tag, description = _BOOL, "true or false"
    _TRUE = frozenset({"true", "yes", "on", "y"})

    def convert(self, text: str, path: Path, report: Report) -> bool:
        return text.lower() in self._TRUE

    def from_text(self, text: str) -> bool:
        lowered = text.lower()
        if lowered in self._TRUE:
            return True
        if lowered in {"false", "no", "off", "n"}:
            return False
        raise ValueError(f"{text!r} is not on/off")


class Int(Scalar):
    tag = _INT

    def __init__(self, low: int, high: int) -> None:
        self.low, self.high = low, high
        self.description = f"a whole number from {low} to {high}"

    def convert(self, text: str, path: Path, report: Report) -> Any:
        value = int(text, 0)
        if not self.low <= value <= self.high:
            return report.error(path, f"{value} is out of range ({self.low} to {self.high})")
        return value

    def from_text(self, text: str) -> int:
        if not text.isdigit():
            raise ValueError(f"{text!r} is not a number")
        return super().from_text(text)


class FormatVersion(Int):
    """The ``version:`` of a file format: exactly the one this code reads."""

    def __init__(self, current: int) -> None:
        super().__init__(current, current)
        self.description = f"the format version {current}"

    def convert(self, text: str, path: Path, report: Report) -> Any:
        if int(text, 0) != self.low:
            return report.error(
                path, f"unsupported version {text} (this postwarden reads version {self.low})"
            )
        return self.low


class Text(Scalar):
    """A string, optionally limited in length and checked by a pattern.

    Any non-empty scalar is taken as its literal text, so that ``note: 2024`` or a name like
    ``on`` is not refused for what YAML 1.1 would have typed it as.
    """

    def __init__(
        self,
        description: str = "text",
        *,
        max_length: int = 200,
        pattern: str | None = None,
        check: Callable[[str], str | None] | None = None,
    ) -> None:
        self.description = description
        self.max_length = max_length
        self.pattern = re.compile(pattern) if pattern else None
        self.check = check

    def read(self, node: yaml.Node, path: Path, report: Report) -> Any:
        if not isinstance(node, yaml.ScalarNode) or node.tag == _NULL:
            return report.error(path, f"expected {self.description}, got {_what(node)}")
        return self.convert(node.value, path, report)

    def convert(self, text: str, path: Path, report: Report) -> Any:
        if len(text) > self.max_length:
            return report.error(path, f"longer than {self.max_length} characters")
        if self.pattern and not self.pattern.fullmatch(text):
            return report.error(path, f"{text!r} is not {self.description}")
        problem = self.check(text) if self.check else None
        if problem:
            return report.error(path, problem)
        return text


class Choice(Text):
    def __init__(self, *choices: str) -> None:
        super().__init__(" or ".join(choices))
        self.choices = choices

    def convert(self, text: str, path: Path, report: Report) -> Any:
        if text not in self.choices:
            return report.error(path, f"{text!r} is not one of: {', '.join(self.choices)}")
        return text


_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


def normalize_domain(text: str) -> str:
    """Lower-case, strip one trailing dot and turn a U-label name into its A-label form.

    :raises ValueError: naming the text when it is not a valid domain name.
    """
    try:
        name = to_a_label(text.strip().rstrip("."))
    except BadDomainName:
        raise ValueError(f"{text!r} is not a valid domain name") from None
    labels = name.split(".")
    if len(name) > 253 or len(labels) < 2 or not all(_LABEL.fullmatch(x) for x in labels):
        raise ValueError(f"{text!r} is not a valid domain name")
    return name


class Domain(Text):
    """A domain name, normalized; with ``allow_dot`` a leading dot means "its subdomains"."""

    def __init__(self, *, allow_dot: bool = False) -> None:
        super().__init__("a domain name")
        self.allow_dot = allow_dot

    def convert(self, text: str, path: Path, report: Report) -> Any:
        dot = "." if self.allow_dot and text.startswith(".") else ""
        try:
            return dot + normalize_domain(text[len(dot) :])
        except ValueError as exc:
            return report.error(path, str(exc))


@dataclass(frozen=True)
class IpEntry:
    """One entry of an IP list: the range and the administrator's note."""

    range: IpRange
    note: str = ""

    @functools.cached_property
    def text(self) -> str:  # once per entry: it is in every log line of a decision it makes
        return self.range.to_text()


class IpEntryKind(Kind):
    """An IP list entry: ``ENTRY`` or ``{ip: ENTRY, note: TEXT}``.

    ``max_prefix`` refuses ranges wider than a prefix length per IP version; ``warn_prefix``
    only warns. A range covering every address is always refused.
    """

    description = "an IP address, CIDR network or first-last range, optionally with a note"

    def __init__(
        self, *, max_prefix: dict[int, int] | None = None, warn_prefix: dict[int, int] | None = None
    ) -> None:
        self.max_prefix = max_prefix or {}
        self.warn_prefix = warn_prefix or {}

    def read(self, node: yaml.Node, path: Path, report: Report) -> Any:
        note = ""
        if isinstance(node, yaml.MappingNode):
            fields = read_mapping(node, path, report, {"ip": True, "note": False})
            if "ip" not in fields:
                return INVALID
            if "note" in fields:
                note = NOTE.read(fields["note"], (*path, "note"), report)
            node = fields["ip"]
        if not isinstance(node, yaml.ScalarNode) or node.tag not in (_STR, _INT):
            return report.error(path, f"expected {self.description}, got {_what(node)}")
        try:
            return self.make(node.value, note if note is not INVALID else "", path, report)
        except BadIpEntry as exc:
            return report.error(path, str(exc))

    def make(self, text: str, note: str, path: Path, report: Report) -> Any:
        """Build an entry from text, applying this list's width rules."""
        ip_range = parse_range(text)
        if ip_range.prefixlen == 0:
            return report.error(path, f"{text!r} covers every address; that is refused")
        limit = self.max_prefix.get(ip_range.version)
        if limit is not None and ip_range.prefixlen < limit:
            return report.error(
                path, f"{text!r} is wider than /{limit}, the widest range allowed here"
            )
        warn = self.warn_prefix.get(ip_range.version)
        if warn is not None and ip_range.prefixlen < warn:
            report.warn(
                path,
                f"{text!r} is wider than /{warn}: large shared senders must not be allowed"
                " wholesale",
            )
        return IpEntry(ip_range, note)

    def to_data(self, value: IpEntry) -> Any:
        return {"ip": value.text, "note": value.note} if value.note else value.text


NOTE = Text("a note", max_length=500)


class ListOf(Kind):
    def __init__(self, item: Kind, *, max_items: int, noun: str = "entries") -> None:
        self.item, self.max_items, self.noun = item, max_items, noun
        self.description = f"a list of at most {max_items:,} {noun}"

    def read(self, node: yaml.Node, path: Path, report: Report) -> Any:
        if isinstance(node, yaml.ScalarNode) and node.tag == _NULL:
            return ()
        if not isinstance(node, yaml.SequenceNode):
            return report.error(path, f"expected {self.description}, got {_what(node)}")
        if len(node.value) > self.max_items:
            report.error(
                path, f"{len(node.value):,} {self.noun}; at most {self.max_items:,} are allowed"
            )
        items = (self.item.read(child, (*path, i), report) for i, child in enumerate(node.value))
        return tuple(item for item in items if item is not INVALID)

    def to_data(self, value: Sequence[Any]) -> Any:
        return [self.item.to_data(item) for item in value]


class MapOf(Kind):
    """A mapping from validated keys to values; ``None`` values allowed when ``optional``."""

    def __init__(self, key: Text, value: Kind, *, max_items: int, optional: bool = False) -> None:
        self.key, self.value, self.max_items, self.optional = key, value, max_items, optional
        self.description = f"a mapping of {key.description} to settings"

    def read(self, node: yaml.Node, path: Path, report: Report) -> Any:
        if isinstance(node, yaml.ScalarNode) and node.tag == _NULL:
            return {}
        if not isinstance(node, yaml.MappingNode):
            return report.error(path, f"expected {self.description}, got {_what(node)}")
        if len(node.value) > self.max_items:
            report.error(path, f"more than {self.max_items:,} entries")
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                report.error(path, f"keys must be {self.key.description}")
                continue
            key = self.key.read(key_node, (*path, str(key_node.value)), report)
            if key is INVALID:
                continue
            if key in result:
                report.error((*path, key), "given twice", key_node)
                continue
            if self.optional and value_node.tag == _NULL:
                result[key] = None
            else:
                value = self.value.read(value_node, (*path, key), report)
                if value is not INVALID:
                    result[key] = value
        return result

    def to_data(self, value: dict[str, Any]) -> Any:
        return {k: None if v is None else self.value.to_data(v) for k, v in value.items()}


class Record(Kind):
    """A mapping with fixed keys, read into a dataclass declared with :func:`setting`."""

    def __init__(self, cls: type) -> None:
        self.cls = cls
        self.description = "a mapping"

    def fields(self) -> Iterator[tuple[str, Kind, Any, str]]:
        """Yield ``(name, kind, default, doc)`` for every setting of the record."""
        for f in dataclasses.fields(self.cls):
            if "kind" in f.metadata:
                default = f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[operator]
                yield f.name, f.metadata["kind"], default, f.metadata["doc"]

    def read(self, node: yaml.Node, path: Path, report: Report) -> Any:
        if isinstance(node, yaml.ScalarNode) and node.tag == _NULL:
            return self.cls()
        if not isinstance(node, yaml.MappingNode):
            return report.error(path, f"expected a mapping, got {_what(node)}")
        known = {
            f.name: f.metadata["required"]
            for f in dataclasses.fields(self.cls)
            if "kind" in f.metadata
        }
        nodes = read_mapping(node, path, report, known)
        values = {}
        for name, kind, _, _ in self.fields():
            if name in nodes:
                value = kind.read(nodes[name], (*path, name), report)
                if value is not INVALID:
                    values[name] = value
        return self.cls(**values)

    def to_data(self, value: Any) -> Any:
        data = {}
        for name, kind, default, _ in self.fields():
            item = getattr(value, name)
            if item != default or name in getattr(self.cls, "ALWAYS_WRITTEN", ()):
                data[name] = kind.to_data(item)
        return data


def read_mapping(
    node: yaml.MappingNode, path: Path, report: Report, keys: dict[str, bool]
) -> dict[str, yaml.Node]:
    """Read a mapping with fixed string keys (``{key: required}``); report strays and gaps."""
    found: dict[str, yaml.Node] = {}
    for key_node, value_node in node.value:
        key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
        if not isinstance(key, str) or key not in keys:
            report.error((*path, str(key)), f"unknown setting (known: {', '.join(keys)})")
        elif key in found:
            report.error((*path, key), "given twice", key_node)
        else:
            found[key] = value_node
    for key, required in keys.items():
        if required and key not in found:
            report.error((*path, key), "required setting is missing")
    return found
