"""The system log of a sandbox as `log` events: `logger`, syslog(3) and Python's
SysLogHandler inside, the SDK's callbacks and the REST stream outside."""

from __future__ import annotations

import json
import secrets
import threading
from typing import Any

import httpx

from sandlot import Sandbox, Sandlot
from sandlot.agent.syslog import RATE
from sandlot.sdk import Event
from sandlot.testing import ServerProcess


def log_events(sbx: Sandbox, until: int, timeout: float = 15.0) -> list[dict[str, Any]]:
    """The sandbox's log events from the start, once `until` have arrived or it has
    been quiet for a while."""
    got: list[dict[str, Any]] = []
    for event in sbx.events(since=0, types="log", idle_timeout=timeout):
        got.append(event.data)
        if len(got) >= until:
            break
    return got


def test_logger_line_reaches_callbacks_and_the_rest_stream(
    client: Sandlot, server: ServerProcess
) -> None:
    word = secrets.token_hex(4)
    with Sandbox.create(client=client) as sbx:
        seen: list[Event] = []
        arrived = threading.Event()

        def on_log(event: Event) -> None:
            seen.append(event)
            arrived.set()

        sbx.on("log", on_log)
        sbx.commands.run(f"logger -t myapp hello-{word}")
        assert arrived.wait(15), "no log event arrived"
        sbx.off("log", on_log)
        assert seen[0].sandbox_id == sbx.id
        assert {k: seen[0].data[k] for k in ("line", "tag", "severity")} == {
            "line": f"hello-{word}",
            "tag": "myapp",
            "severity": "notice",
        }
        assert seen[0].data["at"].startswith(str(seen[0].at.year))

        headers = {"X-API-Key": server.api_key, "Accept": "text/event-stream"}
        url = f"{server.url}/v1/sandboxes/{sbx.id}/events?types=log&since=0"
        with httpx.stream("GET", url, headers=headers, timeout=15) as r:
            for line in r.iter_lines():
                if line.startswith("data:"):
                    event = json.loads(line.removeprefix("data:"))
                    break
        assert (event["type"], event["data"]["line"]) == ("log", f"hello-{word}")


def test_python_syslog_handler(sandbox: Sandbox) -> None:
    program = (
        "import logging, logging.handlers\n"
        "log = logging.getLogger('app')\n"
        "handler = logging.handlers.SysLogHandler(address='/dev/log')\n"
        "handler.setFormatter(logging.Formatter('app: %(message)s'))\n"
        "log.addHandler(handler)\n"
        "log.error('disk is on fire')\n"
    )
    sandbox.files.write("/tmp/log.py", program)
    result = sandbox.commands.run("python3 /tmp/log.py")
    assert result.exit_code == 0, result.stderr
    (line,) = log_events(sandbox, until=1)
    assert (line["tag"], line["line"], line["severity"]) == ("app", "disk is on fire", "err")


TICKER = """
import socket, time
for i in range(1, 61):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        s.connect('/dev/log')
        s.send(b'<14>ticker: n%d' % i)
    except OSError:
        pass  # logged in the moment of the checkpoint, when the socket is closed
    else:
        with open('/tmp/sent', 'a') as sent:
            sent.write('n%d\\n' % i)
    finally:
        s.close()
    time.sleep(0.05)
"""
"""Logs 60 lines as `logger` does (a fresh socket each), noting each one sent."""


def test_lines_around_a_pause_are_kept_once(client: Sandlot) -> None:
    """Lines wait in the sandbox while the host is away, and come once. The socket itself
    is closed for the moment of the checkpoint (CRIU cannot restore it bound), so the
    writer notes which of its lines it managed to send."""
    holder = (
        "import logging, logging.handlers, time\n"
        "log = logging.getLogger('held')\n"
        "log.addHandler(logging.handlers.SysLogHandler(address='/dev/log'))\n"
        "log.warning('held-before')\n"
        "time.sleep(3)\n"
        "log.warning('held-after')\n"
    )
    with Sandbox.create(client=client) as sbx:
        sbx.files.write("/tmp/holder.py", holder)
        sbx.commands.run("logger -t early before-anyone-reads")
        sbx.commands.run("python3 /tmp/holder.py", background=True)
        sbx.files.write("/tmp/ticker.py", TICKER)
        sbx.commands.run("python3 /tmp/ticker.py", background=True)
        sbx.commands.run("sleep 1")
        info = sbx.pause()
        sbx.resume()
        sbx.commands.run("sleep 3")  # the writers finish
        sent = sbx.files.read("/tmp/sent").split()
        lines = log_events(sbx, until=len(sent) + 3)
        assert lines[0]["line"] == "before-anyone-reads"
        ticks = [line["line"] for line in lines if line["tag"] == "ticker"]
        assert ticks == sent, f"paused by {info.pause_mode}"
        assert len(sent) >= 50  # at most the moment of the checkpoint is lost
        held = [line["line"] for line in lines if line["tag"] == ""]
        assert held == ["held-before", "held-after"]


def test_a_flood_is_capped_and_counted(sandbox: Sandbox) -> None:
    flood = 5 * RATE
    program = (
        "import socket\n"
        "s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
        "s.connect('/dev/log')\n"
        f"for i in range({flood}):\n"
        "    s.send(b'<14>flood: line %d' % i)\n"
    )
    sandbox.files.write("/tmp/flood.py", program)
    assert sandbox.commands.run("python3 /tmp/flood.py").exit_code == 0
    lines = log_events(sandbox, until=flood, timeout=4)
    kept = [line for line in lines if line["tag"] == "flood"]
    notes = [line for line in lines if line["tag"] == "sandlot"]
    assert RATE <= len(kept) < flood
    dropped = sum(int(note["line"].split()[1]) for note in notes)
    assert len(kept) + dropped == flood
