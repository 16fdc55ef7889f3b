"""A hostile stand-in for the agent, run as root inside a sandbox (standard library only).

It has the real agent stop listening (a quiesce request on the agent's own socket, which
root inside can reach), binds the same path, answers the host's ping so the host takes
it for the agent, and then answers everything else with random and adversarial frames:
garbage, oversize headers, floods of events and data past the credit window, frames for
streams nobody opened, log lines dated 9999 and megabytes long, and silence. Under runc
the host refuses its socket before sending a byte (it was not made by the sandbox's
init); `HEARD` records whether the host ever spoke to it.

    python3 fake_agent.py SECONDS SEED
"""

from __future__ import annotations

import json
import os
import random
import socket
import struct
import sys
import threading
import time

SOCKET = "/.sandlot/run/agent.sock"
PREFIX = struct.Struct("!II")


def frame(header: dict[str, object], payload: bytes = b"") -> bytes:
    raw = json.dumps(header).encode()
    return PREFIX.pack(len(raw), len(payload)) + raw + payload


def read_frame(conn: socket.socket) -> dict[str, object] | None:
    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    header_len, payload_len = PREFIX.unpack(exactly(PREFIX.size))
    header = json.loads(exactly(header_len))
    exactly(payload_len)
    return header if isinstance(header, dict) else None


def quiesce_the_real_agent() -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect(SOCKET)
        conn.sendall(frame({"sid": 1, "type": "request", "op": "quiesce", "args": {}}))
        read_frame(conn)
    for _ in range(100):  # it unlinks its socket once it has stopped
        if not os.path.exists(SOCKET):
            return
        time.sleep(0.05)
    os.unlink(SOCKET)


def attack(rng: random.Random, conn: socket.socket, sid: int, op: str) -> None:
    kind = rng.choice(
        ["silence", "events", "data", "garbage", "huge", "orphans", "logs", "malformed"]
    )
    if kind == "silence":
        return
    if kind == "events":  # unsolicited events on the stream, fast, never credited
        for _ in range(2000):
            conn.sendall(frame({"sid": sid, "type": "event", "event": "x", "pad": "y" * 4096}))
    elif kind == "data":  # far past the 4 MiB window
        for _ in range(40):
            conn.sendall(frame({"sid": sid, "type": "data"}, os.urandom(1 << 18)))
    elif kind == "garbage":
        conn.sendall(os.urandom(rng.randrange(1, 1 << 16)))
    elif kind == "huge":  # a header declared at 8 MiB
        conn.sendall(PREFIX.pack(8 * 1024 * 1024, 0) + b"{" * 65536)
    elif kind == "orphans":
        for n in range(5000):
            conn.sendall(frame({"sid": 10_000_000 + n, "type": "response", "result": {}}))
    elif kind == "logs":
        line = {"line": "L" * 8000, "tag": "t" * 5000, "severity": "??", "at": 253402300799}
        for _ in range(200):
            conn.sendall(frame({"sid": sid, "type": "event", "event": "log", "lines": [line] * 50}))
    elif kind == "malformed":
        result = rng.choice([None, [], "x", {"exit_code": "no"}, {"process_id": 5}])
        conn.sendall(frame({"sid": sid, "type": "response", "result": result}))


HEARD = "/.sandlot/run/fake_agent.heard"
"""Appended to once per connection on which the host sent a frame: whether it spoke
(beside the socket, where the host can read it whatever the sandbox answers)."""


def serve(conn: socket.socket, rng: random.Random) -> None:
    heard = False
    try:
        while True:
            header = read_frame(conn)
            if not heard:
                heard = True
                with open(HEARD, "a") as f:
                    f.write("connection\n")
            if header is None or header.get("type") != "request":
                continue
            sid = int(str(header.get("sid")))
            op = str(header.get("op"))
            if op == "ping":
                result = {"version": "0", "protocol": 1, "uptime": 1.0, "pid": 1}
                conn.sendall(frame({"sid": sid, "type": "response", "result": result}))
                continue
            attack(rng, conn, sid, op)
    except (EOFError, OSError, ValueError):
        pass
    finally:
        conn.close()


def main() -> None:
    seconds, seed = float(sys.argv[1]), int(sys.argv[2])
    rng = random.Random(seed)
    quiesce_the_real_agent()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(SOCKET)
    listener.listen(64)
    listener.settimeout(0.5)
    print("listening", flush=True)
    end = time.time() + seconds
    while time.time() < end:
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            continue
        threading.Thread(
            target=serve, args=(conn, random.Random(rng.random())), daemon=True
        ).start()


if __name__ == "__main__":
    main()
