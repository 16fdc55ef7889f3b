"""Background processes, streaming, stdin, signals, re-attach and PTYs, end to end."""

from __future__ import annotations

import hashlib
import time

import httpx
import pytest

from sandlot import AsyncSandbox, Sandbox, Sandlot
from sandlot.errors import CommandTimeoutError, ProcessNotFoundError
from sandlot.testing import ServerProcess, process_memory_mb


def collect(handle: object) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for chunk in handle.stream():  # type: ignore[attr-defined]
        out[chunk.stream] = out.get(chunk.stream, b"") + chunk.data
    return out


def test_background_stream_and_wait(sandbox: Sandbox) -> None:
    h = sandbox.commands.run(
        "for i in 1 2 3; do echo out$i; echo err$i >&2; sleep 0.1; done", background=True
    )
    assert h.pid > 0 and h.id
    out = collect(h)
    assert out["stdout"] == b"out1\nout2\nout3\n" and out["stderr"] == b"err1\nerr2\nerr3\n"
    r = h.wait(timeout=30)
    assert r.exit_code == 0 and r.signal is None and r.duration_ms >= 300


def test_line_callbacks_while_waiting(sandbox: Sandbox) -> None:
    lines: list[tuple[str, str]] = []
    r = sandbox.commands.run(
        "printf 'a\\nb'; sleep 0.2; printf 'c\\n'; echo e >&2",
        on_stdout=lambda line: lines.append(("out", line)),
        on_stderr=lambda line: lines.append(("err", line)),
    )
    assert r.exit_code == 0
    assert [x for x in lines if x[0] == "out"] == [("out", "a"), ("out", "bc")]
    assert ("err", "e") in lines


def test_stdin_and_eof(sandbox: Sandbox) -> None:
    h = sandbox.commands.run("cat; echo done", background=True)
    h.send_stdin("hello\n")
    h.send_stdin(b"\xff\xfe binary\n")
    h.close_stdin()
    r = h.wait(timeout=30)
    assert r.exit_code == 0
    assert r.stdout.startswith("hello\n") and r.stdout.endswith("done\n")


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT", "SIGKILL", "SIGHUP"])
def test_kill_with_each_signal(sandbox: Sandbox, sig: str) -> None:
    h = sandbox.commands.run("sleep 100", background=True)
    h.kill(signal=sig)
    r = h.wait(timeout=30)
    assert r.exit_code is None and r.signal == sig


def test_default_kill_is_sigkill(sandbox: Sandbox) -> None:
    h = sandbox.commands.run("trap '' TERM; sleep 100", background=True)
    h.kill()
    assert h.wait(timeout=30).signal == "SIGKILL"


def test_list_and_reattach_from_a_second_client(sandbox: Sandbox, server: ServerProcess) -> None:
    h = sandbox.commands.run(
        "for i in $(seq 1 5); do echo tick$i; sleep 0.2; done", background=True
    )
    listed = {p.id: p for p in sandbox.commands.list()}
    assert h.id in listed and listed[h.id].pid == h.pid and listed[h.id].status == "running"
    time.sleep(0.5)
    with Sandlot(api_url=server.url, api_key=server.api_key) as other:
        again = other.sandboxes.get(sandbox.id).commands.connect(h.id)
        out = collect(again)
        assert out["stdout"] == b"".join(f"tick{i}\n".encode() for i in range(1, 6))
        assert again.wait(timeout=30).exit_code == 0
    assert h.id not in {p.id for p in sandbox.commands.list()}


def test_disconnect_keeps_running_and_max_run_after_disconnect(sandbox: Sandbox) -> None:
    survivor = sandbox.commands.run("sleep 30", background=True)
    bounded = sandbox.commands.run("sleep 30", background=True, max_run_after_disconnect=1)
    survivor.close()
    bounded.close()
    time.sleep(2.5)
    running = {p.id for p in sandbox.commands.list()}
    assert survivor.id in running and bounded.id not in running
    sandbox.commands.connect(survivor.id).kill()


def test_timeout_streamed_run(sandbox: Sandbox) -> None:
    seen: list[str] = []
    with pytest.raises(CommandTimeoutError) as err:
        sandbox.commands.run("echo begun; sleep 60", timeout=1, on_stdout=seen.append)
    assert seen == ["begun"] and "begun" in err.value.stdout


def test_unknown_process(sandbox: Sandbox) -> None:
    with pytest.raises(ProcessNotFoundError):
        sandbox.commands.connect("proc-doesnotexist")


def test_binary_output_survives(sandbox: Sandbox) -> None:
    h = sandbox.commands.run(
        "printf '\\xff\\x00\\xfe'; head -c 3000000 /dev/urandom | sha256sum >&2", background=True
    )
    out = collect(h)
    assert out["stdout"] == b"\xff\x00\xfe"
    assert h.wait().exit_code == 0


def test_large_stream_in_order(sandbox: Sandbox) -> None:
    sandbox.commands.run("head -c 50000000 /dev/urandom > /workspace/blob")
    want = sandbox.commands.run("sha256sum /workspace/blob").stdout.split()[0]
    h = sandbox.commands.run("cat /workspace/blob", background=True)
    sha = hashlib.sha256()
    for chunk in h.stream():
        sha.update(chunk.data)
    assert sha.hexdigest() == want


def test_pty_like_a_person(sandbox: Sandbox) -> None:
    screen: list[bytes] = []
    t = sandbox.pty.create(cols=120, rows=40, on_output=screen.append)

    def wait_for(text: bytes, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while text not in b"".join(screen):
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} never appeared in {b''.join(screen)[-400:]!r}")
            t.pump(0.1)

    t.send("stty size\n")
    wait_for(b"40 120")
    t.resize(cols=80, rows=24)
    t.send("stty size; tty\n")
    wait_for(b"24 80")
    wait_for(b"/dev/pts/")
    t.send("exit 3\n")
    assert t.wait(timeout=30).exit_code == 3


def test_processes_api_over_http(server: ServerProcess, sandbox: Sandbox) -> None:
    headers = {"X-API-Key": server.api_key}
    base = f"{server.url}/v1/sandboxes/{sandbox.id}/processes"
    r = httpx.post(base, json={"command": "sleep 50"}, headers=headers)
    assert r.status_code == 201, r.text
    proc = r.json()["data"]
    assert proc["status"] == "running" and proc["pty"] is False and proc["startedAt"]
    r = httpx.post(f"{base}/{proc['id']}/signal", json={"signal": "SIGTERM"}, headers=headers)
    assert r.status_code == 200
    deadline = time.monotonic() + 10
    while httpx.get(f"{base}/{proc['id']}", headers=headers).json()["data"]["status"] != "exited":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    final = httpx.get(f"{base}/{proc['id']}", headers=headers).json()["data"]
    assert final["signal"] == "SIGTERM" and final["exitCode"] is None
    exited = httpx.get(base, params={"all": "true"}, headers=headers).json()["data"]
    assert proc["id"] in {p["id"] for p in exited}
    bad = httpx.post(f"{base}/{proc['id']}/resize", json={"cols": 0, "rows": 5}, headers=headers)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "INVALID_CONFIG"
    missing = httpx.get(f"{base}/proc-nope", headers=headers)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "PROCESS_NOT_FOUND"


async def test_async_handles(client: Sandlot, server: ServerProcess) -> None:
    from sandlot import AsyncSandlot

    async with (
        AsyncSandlot(api_url=server.url, api_key=server.api_key) as aclient,
        await AsyncSandbox.create(client=aclient) as sbx,
    ):
        h = await sbx.commands.run("echo a; read x; echo got $x", background=True)
        await h.send_stdin("z\n")
        chunks = [c.data async for c in h.stream()]
        assert b"".join(chunks) == b"a\ngot z\n"
        assert (await h.wait()).exit_code == 0


def test_slow_consumer_does_not_grow_server_memory(sandbox: Sandbox, server: ServerProcess) -> None:
    assert server.proc is not None
    size = 100 * 1024 * 1024
    h = sandbox.commands.run(f"head -c {size} /dev/zero", background=True)
    baseline = process_memory_mb(server.proc.pid)
    peak, received, next_pause = baseline, 0, 0
    for chunk in h.stream():
        received += len(chunk.data)
        if received >= next_pause:  # a reader far slower than the producer
            time.sleep(0.03)
            peak = max(peak, process_memory_mb(server.proc.pid))
            next_pause += 1024 * 1024
    assert received == size
    assert peak - baseline < 48, f"server RSS grew {peak - baseline:.0f} MiB for a slow reader"
