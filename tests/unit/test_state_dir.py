"""The state directory is made the service user's before root writes there, or refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from postwarden.settings.paths import StateDirUnusable, ensure_state_dir


def test_without_the_service_user_root_refuses_naming_setup(tmp_path: Path) -> None:
    with pytest.raises(StateDirUnusable, match=r"no service user 'no-such-user'.*postwarden setup"):
        ensure_state_dir(tmp_path / "state", user="no-such-user")
    assert not (tmp_path / "state").exists()
