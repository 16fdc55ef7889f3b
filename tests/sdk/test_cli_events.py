"""`sandlot events` and `sandlot sandbox watch` without a server: help, the sparkline,
the watch view, event summaries, and `events` against a scripted WebSocket peer."""

from __future__ import annotations

import json
from collections.abc import Mapping

import pytest
from typer.testing import CliRunner
from websockets.sync.server import ServerConnection

from sandlot.cli.app import app
from sandlot.cli.events import event_line, event_summary
from sandlot.cli.output import human_bytes
from sandlot.cli.watch import HISTORY, WatchView, sparkline
from sandlot.sdk import Event

from .conftest import Peer
from .test_events import METRICS, SBX, event, metrics, status

runner = CliRunner()


@pytest.mark.parametrize("args", [["events"], ["sandbox", "watch"]])
def test_help(args: list[str]) -> None:
    result = runner.invoke(app, [*args, "--help"])
    assert result.exit_code == 0, result.output
    assert "--api-url" in result.output


def test_events_help_lists_its_options() -> None:
    output = runner.invoke(app, ["events", "--help"]).output
    for option in ("--follow", "--since", "--type", "--sandbox", "--json"):
        assert option in output
    assert "--once" in runner.invoke(app, ["sandbox", "watch", "--help"]).output


def test_sparkline() -> None:
    assert sparkline([]) == ""
    assert sparkline([0, 50, 100], top=100) == "▁▅█"
    assert sparkline([1, 2, 4, 8]) == "▂▃▅█"  # scaled to the largest
    assert sparkline([0, 0]) == "▁▁"
    assert sparkline([-5, 500], top=100) == "▁█"  # clipped to the scale
    assert len(sparkline(range(100))) == HISTORY
    assert sparkline(range(10), width=3) == "▆▇█"


def test_human_bytes() -> None:
    assert human_bytes(0) == "0 B"
    assert human_bytes(1023) == "1023 B"
    assert human_bytes(1536) == "1.5 KiB"
    assert human_bytes(512 * 1024**2) == "512.0 MiB"
    assert human_bytes(3 * 1024**5) == "3072.0 TiB"


def test_the_watch_view_follows_status_and_metrics() -> None:
    view = WatchView(SBX, "running")
    for cpu in (10.0, 50.0, 100.0):
        view.apply(Event.model_validate_json(metrics(cpu)))
    view.apply(Event.model_validate_json(event(9, "file.created", {"path": "/a"})))
    assert list(view.history["cpu"]) == [10.0, 50.0, 100.0]
    assert view.latest is not None and view.latest.pids == 7
    assert not view.ended
    view.apply(Event.model_validate_json(status(10, "terminated", "killed")))
    assert view.ended and view.reason == "killed"

    from rich.console import Console

    console = Console(width=120, record=True)
    console.print(view.render())
    text = console.export_text()
    assert f"{SBX}  terminated (killed)" in text
    assert "100.0%" in text and "▂▅█" in text
    assert "204.8 MiB / 512.0 MiB" in text and "300 B/s" in text


def test_event_summaries() -> None:
    def summary(kind: str, data: Mapping[str, object]) -> str:
        return event_summary(Event.model_validate_json(event(1, kind, dict(data))))

    assert summary("status", {"status": "terminated", "reason": "timeout"}) == (
        "terminated (timeout)"
    )
    assert summary("status", {"status": "paused", "runtimeDurationMs": 1500}) == (
        "paused after 1.5 s"
    )
    assert summary(
        "exec.completed",
        {"command": ["ls", "-l", "a b"], "exitCode": 2, "signal": None, "durationMs": 12.4},
    ) == ("ls -l 'a b' exited 2 in 12 ms")
    assert summary("exec.completed", {"command": "sleep 9", "exitCode": None, "timedOut": True})
    assert "killed SIGKILL" in summary("exec.completed", {"command": "x", "signal": "SIGKILL"})
    assert summary("file.created", {"path": "/w/a.txt", "size": 2048}) == "/w/a.txt (2.0 KiB)"
    assert summary(
        "cost.runtime", {"runtimeSeconds": 10, "vcpuSeconds": 20, "memoryMbSeconds": 5120}
    ) == ("runtime 10 s, 20 vCPU·s, 5120 MB·s")
    assert summary("later.kind", {"a": 1}) == '{"a":1}'
    assert "cpu 12.5%" in summary("metrics", METRICS)
    line = event_line(Event.model_validate_json(status(1, "running")))
    assert f"status          {SBX} running" in line


def test_events_prints_the_replay_and_stops_when_it_is_quiet(peer: Peer) -> None:
    def script(ws: ServerConnection) -> None:
        ws.send(status(1, "running"))
        ws.send(event(2, "exec.completed", {"command": "ls", "exitCode": 0}))
        ws.recv(timeout=5)  # holds the socket open: the quiet ends the replay

    peer.script = script
    base = ["--api-url", peer.url, "--api-key", "k1", "events"]
    result = runner.invoke(app, [*base, "--since", "0", "-t", "status", "-t", "exec.completed"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and "running" in lines[0] and "ls exited 0" in lines[1]
    assert peer.paths[0] == "/v1/events?since=0&types=exec.completed,status"

    result = runner.invoke(app, [*base, "--json"])
    assert [json.loads(line)["id"] for line in result.stdout.splitlines()] == [1, 2]
    assert json.loads(result.stdout.splitlines()[0])["sandboxId"] == SBX


def test_watch_polls_when_the_events_socket_fails() -> None:
    from sandlot.cli.watch import _follow
    from sandlot.errors import InternalError
    from sandlot.sdk import Metrics, SandboxInfo

    from .test_models import SANDBOX

    class Polled:
        """A sandbox whose socket cannot be opened and that ends at the third poll."""

        polls = 0

        def events(self, **_: object) -> None:
            raise InternalError("no socket", retryable=True)

        def metrics(self) -> Metrics:
            return Metrics.model_validate({**METRICS, "at": "2025-01-02T03:04:05Z"})

        def refresh(self) -> SandboxInfo:
            self.polls += 1
            done = self.polls >= 3
            return SandboxInfo.model_validate(
                {**SANDBOX, "status": "terminated" if done else "running"}
            )

    view = WatchView(SBX, "running")
    shown: list[str] = []
    _follow(Polled(), view, 0.01, lambda: shown.append(view.status))  # type: ignore[arg-type]
    assert shown == ["running", "running", "terminated"]
    assert len(view.history["cpu"]) == 3
