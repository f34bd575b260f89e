"""The layering of style.md: lower layers never import upper ones."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "postwarden"

# module prefix -> postwarden prefixes it must not import
FORBIDDEN = {
    "postwarden.util": [
        "postwarden.admin",
        "postwarden.web",
        "postwarden.settings",
        "postwarden.state",
        "postwarden.store",
        "postwarden.decision",
        "postwarden.cli",
        "postwarden.policyd",
        "postwarden.milter",
        "postwarden.postfix",
    ],
    # The settings document knows nothing of run-time state or of where it is kept.
    "postwarden.settings": [
        "postwarden.state",
        "postwarden.store",
        "postwarden.admin",
        "postwarden.web",
        "postwarden.decision",
        "postwarden.cli",
        "postwarden.policyd",
        "postwarden.milter",
    ],
    "postwarden.dkim": [
        "postwarden.store",
        "postwarden.admin",
        "postwarden.web",
        "postwarden.cli",
        "postwarden.policyd",
        "postwarden.milter",
    ],
    "postwarden.state": [
        "postwarden.dkim",
        "postwarden.store",
        "postwarden.admin",
        "postwarden.web",
        "postwarden.decision",
        "postwarden.cli",
        "postwarden.policyd",
        "postwarden.milter",
    ],
    # The front door of the store: under everything that reads or edits it.
    "postwarden.store": [
        "postwarden.admin",
        "postwarden.web",
        "postwarden.decision",
        "postwarden.cli",
        "postwarden.policyd",
        "postwarden.milter",
    ],
    "postwarden.decision": ["postwarden.cli", "postwarden.policyd", "postwarden.milter"],
    "postwarden.postfix": ["postwarden.cli", "postwarden.policyd", "postwarden.milter"],
    "postwarden.deploy": ["postwarden.cli", "postwarden.policyd", "postwarden.milter"],
    # Nothing above the store opens a backend of its own.
    "postwarden.policyd": [
        "postwarden.cli",
        "postwarden.milter",
        "postwarden.store.pg",
        "postwarden.store.file",
    ],
    "postwarden.milter": [
        "postwarden.cli",
        "postwarden.policyd",
        "postwarden.store.pg",
        "postwarden.store.file",
    ],
    # One service layer under both front ends; neither front end imports the other.
    "postwarden.admin": [
        "postwarden.cli",
        "postwarden.web",
        "postwarden.milter",
        "postwarden.store.pg",
        "postwarden.store.file",
    ],
    "postwarden.web": ["postwarden.cli", "postwarden.store.pg", "postwarden.store.file"],
    "postwarden.cli": ["postwarden.web", "postwarden.store.pg", "postwarden.store.file"],
}


def _modules() -> list[tuple[str, Path]]:
    result = []
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        result.append((name, path))
    return result


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize(("module", "path"), _modules(), ids=lambda x: str(x))
def test_no_upward_imports(module: str, path: Path) -> None:
    for layer, forbidden in FORBIDDEN.items():
        if module == layer or module.startswith(layer + "."):
            bad = [i for i in _imports(path) for f in forbidden if i == f or i.startswith(f + ".")]
            assert not bad, f"{module} imports {bad}"


def test_no_top_level_package_shadows_pymilter() -> None:
    root = PACKAGE.parent
    assert not (root / "milter" / "__init__.py").exists()
    assert not (root / "mime").exists()
