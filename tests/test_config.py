"""Settings precedence: defaults < sandlot.toml < SANDLOT_* environment < explicit values."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandlot.config import Settings


def test_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "sandlot.toml"
    toml.write_text('port = 9000\nexec_timeout = 5.0\nwarm_pool_size = 4\nhost = "0.0.0.0"\n')
    monkeypatch.setenv("SANDLOT_CONFIG", str(toml))
    monkeypatch.setenv("SANDLOT_WARM_POOL_SIZE", "1")
    monkeypatch.setenv("SANDLOT_EXEC_TIMEOUT", "7")
    settings = Settings(exec_timeout=9.0)
    assert settings.port == 9000  # from the file
    assert settings.host == "0.0.0.0"
    assert settings.warm_pool_size == 1  # the environment beats the file
    assert settings.exec_timeout == 9.0  # an explicit value beats both


def test_derived_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDLOT_CONFIG", str(tmp_path / "absent.toml"))
    settings = Settings(data_dir=tmp_path)
    assert settings.templates_path == tmp_path / "templates"
    assert settings.db_url == f"sqlite:///{tmp_path / 'sandlot.db'}"
    assert Settings(data_dir=tmp_path, template_dir=Path("/t")).templates_path == Path("/t")


def test_bad_value_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SANDLOT_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("SANDLOT_WARM_POOL_SIZE", "-1")
    with pytest.raises(ValueError, match="warm_pool_size"):
        Settings()
