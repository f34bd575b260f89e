"""The daemons' snapshot source: reloads on change, never replaces good settings with bad."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from postwarden.settings.source import SnapshotSource

GOOD = "version: 1\nprimary_domain: example.com\ndomains:\n  example.com:\n    blocked_ips: [{}]\n"


def _write(path: Path, text: str) -> None:
    path.write_text(text)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # a visible change


def test_reload_on_change_and_keep_last_good(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "settings.yaml"
    _write(path, GOOD.format("192.0.2.1"))
    source = SnapshotSource(path)
    first = source.load()
    assert first.policy_for("example.com").blocked.lookup_text("192.0.2.1") is not None
    assert source.refresh() is False  # nothing changed: no reload

    _write(path, GOOD.format("198.51.100.1"))
    assert source.refresh() is True
    assert source.current.policy_for("example.com").blocked.lookup_text("198.51.100.1")
    assert source.current.policy_for("example.com").blocked.lookup_text("192.0.2.1") is None

    good = source.current
    with caplog.at_level(logging.ERROR):
        _write(path, GOOD.format("not-an-ip"))
        assert source.refresh() is False
        path.write_text("version: 1\nprimary_domain: [\n")  # truncated mid-edit
        assert source.refresh() is False
        path.unlink()
        assert source.refresh() is False
    assert source.current is good
    assert "keeping the last good settings" in caplog.text
    assert "'not-an-ip' is not an IP address" in caplog.text

    _write(path, GOOD.format("203.0.113.1"))
    assert source.refresh() is True
    assert source.current.policy_for("example.com").blocked.lookup_text("203.0.113.1")


def test_a_bad_version_is_logged_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "settings.yaml"
    _write(path, GOOD.format("192.0.2.1"))
    source = SnapshotSource(path)
    source.load()
    _write(path, "version: 7\nprimary_domain: example.com\n")
    with caplog.at_level(logging.ERROR):
        source.refresh()
        source.refresh(force=True)
        source.refresh(force=True)
    assert caplog.text.count("unsupported version 7") == 1


def test_first_load_must_succeed(tmp_path: Path) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text("version: 1\n")
    with pytest.raises(Exception, match="primary_domain: required setting is missing"):
        SnapshotSource(path).load()


def test_a_symlink_or_fifo_never_replaces_the_settings(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "settings.yaml"
    _write(path, GOOD.format("192.0.2.1"))
    source = SnapshotSource(path)
    good = source.load()
    other = tmp_path / "other.yaml"
    other.write_text(GOOD.format("203.0.113.1"))  # valid, but reached through a link
    path.unlink()
    path.symlink_to(other)
    with caplog.at_level(logging.ERROR):
        for _ in range(3):
            assert source.refresh(force=True) is False
    assert source.current is good
    assert caplog.text.count("is a symbolic link") == 1  # logged once, not every second
    path.unlink()
    os.mkfifo(path)
    assert source.refresh() is False and source.current is good
    path.unlink()
    _write(path, GOOD.format("198.51.100.1"))
    assert source.refresh() is True


def test_first_load_refuses_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "real.yaml"
    target.write_text(GOOD.format("192.0.2.1"))
    link = tmp_path / "settings.yaml"
    link.symlink_to(target)
    with pytest.raises(OSError, match="is a symbolic link"):
        SnapshotSource(link).load()


CLI_WRITTEN = """\
version: 1
primary_domain: example.com
domains:
  example.com:
    blocked_ips: [192.0.2.1]
    gateway: {enabled: true, ips: [192.0.2.25], only_from_gateway: true}
  other.example:
    gateway: {enabled: true, ips: [192.0.2.25], only_from_gateway: true}
...
"""


def test_a_file_cut_short_never_replaces_the_settings(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`truncate` at a line boundary leaves valid YAML without a domain: refused, logged."""
    path = tmp_path / "settings.yaml"
    _write(path, CLI_WRITTEN)
    refused: list[str] = []
    source = SnapshotSource(path, on_refused=refused.append)
    good = source.load()
    assert good.is_hosted("other.example")
    cut = CLI_WRITTEN[: CLI_WRITTEN.index("  other.example:")]
    with open(path, "r+") as handle:  # in place, as truncate(1) does
        handle.truncate(len(cut.encode()))
    with caplog.at_level(logging.ERROR):
        assert source.refresh() is False
        assert source.refresh(force=True) is False
    assert source.current is good and source.current.is_hosted("other.example")
    assert caplog.text.count("look cut short") == 1 and refused == ["cut-short"]
    _write(path, cut + "...\n")  # a deliberate edit keeps the marker: applied at once
    assert source.refresh() is True and not source.current.is_hosted("other.example")


def test_a_file_without_the_marker_edits_as_before(tmp_path: Path) -> None:
    """Config management that never wrote the marker is not refused for lacking it."""
    path = tmp_path / "settings.yaml"
    _write(path, GOOD.format("192.0.2.1"))
    source = SnapshotSource(path)
    source.load()
    _write(path, GOOD.format("198.51.100.1"))
    assert source.refresh() is True


def test_warnings_are_logged_as_warnings_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "settings.yaml"
    _write(path, GOOD.format("192.0.2.1"))
    source = SnapshotSource(path)
    source.load()
    with caplog.at_level(logging.WARNING):
        _write(path, GOOD.format("192.0.2.0/24, 192.0.2.7"))
        assert source.refresh() is True
        source.refresh(force=True)
    records = [r for r in caplog.records if "is inside" in r.getMessage()]
    assert len(records) == 1 and records[0].levelno == logging.WARNING, caplog.text
    assert "keeping the last good settings" not in caplog.text
