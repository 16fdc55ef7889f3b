"""Event streams that ask for a long backlog and never read it: the server pages the
replay from the store as each stream is consumed, so sixty such streams cost it little
memory and the API answers at once throughout."""

from __future__ import annotations

import socket
import time

import httpx

from sandlot import Sandbox, Sandlot
from sandlot.testing import ServerProcess, process_memory_mb

STREAMS = 60


def test_unread_replays_hold_a_page_each_not_the_backlog(
    server: ServerProcess, client: Sandlot
) -> None:
    with Sandbox.create(client=client) as sbx:
        # ~3,000 stored log lines of 1 KB (the agent lets 200 a second through).
        sbx.commands.run(
            'python3 -c "import syslog, time\n'
            "for i in range(15):\n"
            "    [syslog.syslog('x' * 1000) for _ in range(200)]; time.sleep(1)\"",
            timeout=60,
        )
        time.sleep(2)
    proc = server.proc
    assert proc is not None
    before = process_memory_mb(proc.pid)
    host, port = server.url.removeprefix("http://").split(":")
    request = (
        f"GET /v1/events?since=0 HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n"
        f"X-API-Key: {server.api_key}\r\n\r\n"
    ).encode()
    streams = []
    try:
        for _ in range(STREAMS):
            sock = socket.create_connection((host, int(port)))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # and never read
            sock.sendall(request)
            streams.append(sock)
        time.sleep(3)
        started = time.monotonic()
        assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200
        assert time.monotonic() - started < 1.0
        grown = process_memory_mb(proc.pid) - before
        assert grown < 50, f"the server grew {grown:.0f} MiB for {STREAMS} unread replays"
    finally:
        for sock in streams:
            sock.close()
