"""The shipped Sieve rule compiles and files postwarden's spam verdict into Junk."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "postfix-conf" / "sieve" / "postwarden-spam.sieve"
DOVECOT = ["-o", "mail_uid=nobody", "-o", "mail_gid=nogroup"]


def test_sieve_rule_compiles(tmp_path: Path) -> None:
    done = subprocess.run(
        ["sievec", str(SCRIPT), str(tmp_path / "out.svbin")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("headers", "folder"),
    [
        ("X-Spam-Flag: YES\nX-Postwarden-Spam: pills\n", "Junk"),
        ("", "INBOX"),
    ],
)
def test_sieve_rule_files_tagged_mail(traversable_tmp: Path, headers: str, folder: str) -> None:
    """sieve-test runs as an unprivileged user: script and message in a 0755 directory."""
    script = traversable_tmp / SCRIPT.name
    script.write_bytes(SCRIPT.read_bytes())
    message = traversable_tmp / "message.eml"
    message.write_text(f"From: a@ext.example\nTo: bob@hosted.test\n{headers}Subject: x\n\nhi\n")
    traversable_tmp.chmod(0o777)  # sieve-test saves the compiled script next to it
    done = subprocess.run(
        ["sieve-test", *DOVECOT, str(script), str(message)],
        capture_output=True,
        text=True,
        check=False,
        cwd=traversable_tmp,
    )
    assert done.returncode == 0, done.stderr
    assert f"store message in folder: {folder}" in done.stdout
