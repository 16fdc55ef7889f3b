"""Config discovery: arguments, then environment, then the credentials file."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from sandlot.errors import AuthenticationError, InvalidConfigError
from sandlot.sdk import (
    DEFAULT_API_URL,
    credentials_path,
    load_credentials,
    resolve_config,
    save_credentials,
)


def write_credentials(config_home: Path, text: str) -> None:
    path = config_home / "sandlot" / "credentials"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_credentials_path_follows_xdg_config_home(isolated_config: Path) -> None:
    assert credentials_path() == isolated_config / "sandlot" / "credentials"


def test_relative_xdg_config_home_is_ignored(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/dir")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert credentials_path() == tmp_path / ".config" / "sandlot" / "credentials"


def test_no_key_anywhere_says_how_to_get_one() -> None:
    with pytest.raises(AuthenticationError) as err:
        resolve_config()
    assert "sandlot serve" in err.value.message
    assert "SANDLOT_API_KEY" in err.value.message


def test_credentials_file_is_the_last_resort(isolated_config: Path) -> None:
    write_credentials(isolated_config, 'api_url = "http://file:1"\napi_key = "file-key"\n')
    config = resolve_config()
    assert (config.api_url, config.api_key) == ("http://file:1", "file-key")


def test_environment_beats_the_file(isolated_config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_credentials(isolated_config, 'api_url = "http://file:1"\napi_key = "file-key"\n')
    monkeypatch.setenv("SANDLOT_API_KEY", "env-key")
    config = resolve_config()
    assert (config.api_url, config.api_key) == ("http://file:1", "env-key")
    monkeypatch.setenv("SANDLOT_API_URL", "http://env:2/")
    assert resolve_config().api_url == "http://env:2"


def test_arguments_beat_everything(isolated_config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_credentials(isolated_config, 'api_url = "http://file:1"\napi_key = "file-key"\n')
    monkeypatch.setenv("SANDLOT_API_URL", "http://env:2")
    monkeypatch.setenv("SANDLOT_API_KEY", "env-key")
    config = resolve_config("http://arg:3", "arg-key")
    assert (config.api_url, config.api_key) == ("http://arg:3", "arg-key")


def test_url_defaults_to_the_local_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDLOT_API_KEY", "k")
    assert resolve_config().api_url == DEFAULT_API_URL == "http://127.0.0.1:7766"


def test_empty_environment_values_count_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDLOT_API_URL", "")
    monkeypatch.setenv("SANDLOT_API_KEY", "")
    with pytest.raises(AuthenticationError):
        resolve_config()


def test_malformed_credentials_file_is_a_config_error(isolated_config: Path) -> None:
    write_credentials(isolated_config, "api_key = [unterminated")
    with pytest.raises(InvalidConfigError) as err:
        resolve_config()
    assert str(credentials_path()) in err.value.message


def test_saved_credentials_round_trip_and_stay_private(isolated_config: Path) -> None:
    path = save_credentials("http://127.0.0.1:7766", 'sk-"quoted"\\key')
    assert path == credentials_path()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_credentials() == {"api_url": "http://127.0.0.1:7766", "api_key": 'sk-"quoted"\\key'}
    assert resolve_config().api_key == 'sk-"quoted"\\key'


def test_repr_hides_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDLOT_API_KEY", "secret-key")
    assert "secret-key" not in repr(resolve_config())
