"""Every SDK unit test runs with no Sandlot settings from the machine it runs on.

`peer` is a local WebSocket server that plays a script in place of the attach
endpoint, for the process handles and the commands built on them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from websockets.sync.server import Server, ServerConnection, serve


@pytest.fixture(autouse=True)
def isolated_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty XDG config home and no SANDLOT_* variables; returns the config home."""
    config_home = tmp_path / "config"
    config_home.mkdir()
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config_home))
    monkeypatch.delenv("SANDLOT_API_URL", raising=False)
    monkeypatch.delenv("SANDLOT_API_KEY", raising=False)
    return config_home


@dataclass
class Peer:
    """A WebSocket server that plays `script` to each connection and records it."""

    script: Callable[[ServerConnection], None] = lambda ws: None
    paths: list[str] = field(default_factory=list)
    keys: list[str | None] = field(default_factory=list)
    received: list[str | bytes] = field(default_factory=list)
    url: str = ""

    def handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        self.paths.append(ws.request.path)
        self.keys.append(ws.request.headers.get("X-API-Key"))
        self.script(ws)

    def receive(self, ws: ServerConnection) -> str | bytes:
        message = ws.recv(timeout=5)
        self.received.append(message)
        return message


@pytest.fixture
def peer() -> Iterator[Peer]:
    scripted = Peer()
    server: Server = serve(scripted.handle, "127.0.0.1", 0)
    scripted.url = f"http://127.0.0.1:{server.socket.getsockname()[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield scripted
    server.shutdown()
    thread.join(5)
