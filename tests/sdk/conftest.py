"""Every SDK unit test runs with no Sandlot settings from the machine it runs on."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def isolated_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty XDG config home and no SANDLOT_* variables; returns the config home."""
    config_home = tmp_path / "config"
    config_home.mkdir()
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config_home))
    monkeypatch.delenv("SANDLOT_API_URL", raising=False)
    monkeypatch.delenv("SANDLOT_API_KEY", raising=False)
    return config_home
