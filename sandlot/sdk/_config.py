"""Where the SDK finds the server and the key.

Each setting is taken from the first place that has it: the argument given in code,
then the environment (`SANDLOT_API_URL`, `SANDLOT_API_KEY`), then the credentials file
`$XDG_CONFIG_HOME/sandlot/credentials` (TOML with `api_url` and `api_key`), which
`sandlot serve` writes, and for the URL alone a built-in default.
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from sandlot.errors import AuthenticationError, InvalidConfigError

DEFAULT_API_URL = "http://127.0.0.1:7766"
API_URL_ENV = "SANDLOT_API_URL"
API_KEY_ENV = "SANDLOT_API_KEY"


@dataclass(frozen=True)
class ClientConfig:
    """The server a client talks to and the key it proves itself with."""

    api_url: str
    api_key: str = ""

    def __repr__(self) -> str:
        # The key must never end up in a log line or a traceback.
        return f"ClientConfig(api_url={self.api_url!r}, api_key='***')"


def config_dir() -> Path:
    """Sandlot's directory under the XDG config home (`~/.config/sandlot` by default)."""
    xdg = os.environ.get("XDG_CONFIG_HOME", "")
    # The XDG spec says a relative value is invalid and must be ignored.
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".config"
    return base / "sandlot"


def credentials_path() -> Path:
    return config_dir() / "credentials"


def load_credentials(path: Path | None = None) -> dict[str, str]:
    """The `api_url`/`api_key` pairs in the credentials file; empty when there is none."""
    path = credentials_path() if path is None else path
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise InvalidConfigError(f"cannot read the credentials file {path}: {exc}") from exc
    try:
        document = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InvalidConfigError(f"the credentials file {path} is not valid TOML: {exc}") from exc
    return {
        key: value
        for key in ("api_url", "api_key")
        if isinstance(value := document.get(key), str) and value
    }


def save_credentials(api_url: str, api_key: str, path: Path | None = None) -> Path:
    """Write the credentials file readable by its owner only; returns where it went."""
    path = credentials_path() if path is None else path
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # A JSON string is a valid TOML basic string, so no TOML writer is needed.
    text = f"api_url = {json.dumps(api_url)}\napi_key = {json.dumps(api_key)}\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(path, 0o600)
    return path


def resolve_config(
    api_url: str | None = None,
    api_key: str | None = None,
    *,
    require_key: bool = True,
) -> ClientConfig:
    """Pick each setting from code, then the environment, then the credentials file."""
    url = api_url or os.environ.get(API_URL_ENV) or None
    key = api_key or os.environ.get(API_KEY_ENV) or None
    if url is None or key is None:
        stored = load_credentials()
        url = url or stored.get("api_url")
        key = key or stored.get("api_key")
    if key is None and require_key:
        raise AuthenticationError(
            "no Sandlot API key found: start a server with `sandlot serve` (it writes "
            f"{credentials_path()}), or set {API_KEY_ENV}, or pass the key explicitly"
        )
    return ClientConfig(api_url=(url or DEFAULT_API_URL).rstrip("/"), api_key=key or "")
