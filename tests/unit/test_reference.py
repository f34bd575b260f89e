"""The README's settings reference is the one generated from the schema."""

from __future__ import annotations

from pathlib import Path

from postwarden.settings.reference import BEGIN, END, render_markdown

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_reference_is_current() -> None:
    text = README.read_text()
    current = text[text.index(BEGIN) : text.index(END) + len(END)] + "\n"
    assert current == render_markdown(), "run tools/settings-reference --write"


def test_every_setting_has_a_doc() -> None:
    rendered = render_markdown()
    assert "|  |" not in rendered.replace("|  | ", "")  # no empty meaning column
    assert "`allowed_ips`" in rendered and "at most 10,000" in rendered
