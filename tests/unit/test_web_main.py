"""postwarden-web's start-up checks: loopback by default, no exposed plaintext listener."""

from __future__ import annotations

from pathlib import Path

import pytest
import uvicorn

from postwarden.server import BadAddress
from postwarden.settings.store import SettingsNotFound
from postwarden.web.main import build_parser, server_config
from tests.unit.conftest import Cli


def _config(cli: Cli, *argv: str) -> uvicorn.Config:
    args = build_parser().parse_args(
        ["--settings", str(cli.settings), "--state-dir", str(cli.state_dir), *argv]
    )
    return server_config(args)


def test_loopback_by_default(cli: Cli) -> None:
    cli.ok("init", "example.com")
    config = _config(cli)
    assert (config.host, config.port) == ("127.0.0.1", 10045)
    assert not config.proxy_headers and config.ssl_certfile is None


def test_an_exposed_listener_needs_tls_or_a_proxy(cli: Cli, tmp_path: Path) -> None:
    cli.ok("init", "example.com")
    with pytest.raises(BadAddress, match="is not loopback"):
        _config(cli, "--listen", "inet:0.0.0.0:8443")
    with pytest.raises(BadAddress, match="go together"):
        _config(cli, "--tls-cert", str(tmp_path / "c.pem"))
    proxied = _config(cli, "--listen", "inet:192.0.2.1:8080", "--trusted-proxy", "192.0.2.9")
    assert proxied.proxy_headers and proxied.forwarded_allow_ips == ["192.0.2.9"]


def test_a_missing_settings_file_fails_at_start(cli: Cli) -> None:
    with pytest.raises(SettingsNotFound, match="no such file"):
        _config(cli)
