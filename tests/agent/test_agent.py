"""The agent as a real process on the host, driven through AgentClient.

The agent runs exactly as in a sandbox (minus the namespaces): a subprocess listening on
a unix socket, reaping its children, serving many streams per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import signal
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sandlot.agent.protocol import (
    CHUNK_SIZE,
    ERROR,
    READ_BUFFER_LIMIT,
    STREAM_WINDOW,
    Frame,
    encode_frame,
    read_frame,
)
from sandlot.agent.server import Agent
from sandlot.errors import (
    FileExistsInSandboxError,
    FileNotFoundInSandboxError,
    FileOperationError,
    InvalidConfigError,
    SandboxUnavailableError,
)
from sandlot.runtime.agent_client import AgentClient

from .conftest import (
    ROOT_HOME,
    RunningAgent,
    connected,
    eventually,
    parent_of,
    pattern,
    process_state,
    start_agent,
    zombie_children,
)

ENTRY_KEYS = {"name", "path", "type", "size", "mode", "mtime", "symlink_target"}


# -- connection and ping -------------------------------------------------------------


@pytest.mark.asyncio
async def test_ping_reports_version_and_uptime(agent: RunningAgent) -> None:
    async with connected(agent) as client:
        first = await client.ping()
        await asyncio.sleep(0.05)
        second = await client.ping()
    assert first["version"] == "0.1.0" and first["protocol"] == 1
    assert first["pid"] == agent.pid
    assert second["uptime"] >= first["uptime"] + 0.04


@pytest.mark.asyncio
async def test_connect_waits_for_a_starting_agent_and_times_out_on_none(tmp_path: Path) -> None:
    running = start_agent(tmp_path)
    try:
        started = time.monotonic()
        async with connected(running) as client:
            assert (await client.ping())["pid"] == running.pid
        assert time.monotonic() - started < 5
    finally:
        running.stop()
    started = time.monotonic()
    with pytest.raises(SandboxUnavailableError, match="did not answer"):
        await AgentClient.connect(tmp_path / "nobody.sock", timeout=0.2)
    assert time.monotonic() - started < 1


@pytest.mark.asyncio
async def test_exec_keeps_only_the_tail_past_max_output(agent: RunningAgent) -> None:
    async with connected(agent) as client:
        script = "for i in $(seq 1 20000); do echo line$i; done; echo err >&2"
        result = await client.exec(script, max_output=1000)
    assert result.truncated and len(result.stdout) == 1000
    assert result.stdout.endswith(b"line20000\n") and result.stderr == b"err\n"
    assert result.exit_code == 0


@pytest.mark.asyncio
async def test_connect_refuses_a_symlink_planted_at_the_socket_path(agent: RunningAgent) -> None:
    """Root in a sandbox can write the socket's directory; a symlink there to some other
    socket (here a real agent's) must not be followed by the host."""
    planted = Path(tempfile.mkdtemp(prefix="sandlot-plant-")) / "agent.sock"
    planted.symlink_to(agent.socket)
    try:
        with pytest.raises(SandboxUnavailableError, match="did not answer"):
            await AgentClient.connect(planted, timeout=0.3)
        async with connected(agent) as client:  # the real path still works
            assert (await client.ping())["pid"] == agent.pid
    finally:
        shutil.rmtree(planted.parent)


# -- exec ----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_exec_stdout_stderr_and_exit_code(agent: RunningAgent) -> None:
    async with connected(agent) as client:
        shell = await client.exec("echo out; echo err >&2; exit 3")
        argv = await client.exec(["printf", "%s|", "a b", "$HOME"])
    assert (shell.stdout, shell.stderr, shell.exit_code, shell.signal) == (
        b"out\n",
        b"err\n",
        3,
        None,
    )
    assert not shell.timed_out and 0 < shell.duration_ms < 5000
    assert argv.stdout == b"a b|$HOME|" and argv.exit_code == 0


@pytest.mark.asyncio
async def test_exec_env_merges_over_the_agents_and_cwd_resolves(agent: RunningAgent) -> None:
    (agent.workdir / "sub").mkdir(exist_ok=True)
    async with connected(agent) as client:
        default = await client.exec('pwd; echo "$SANDLOT_AGENT_TEST"')
        custom = await client.exec(
            'pwd; echo "$B" "$SANDLOT_AGENT_TEST"',
            cwd="/tmp",
            env={"B": "two", "SANDLOT_AGENT_TEST": "overridden"},
        )
        relative = await client.exec(["pwd"], cwd="sub")
    assert default.stdout.decode() == f"{agent.workdir}\nfrom-agent-env\n"
    assert custom.stdout == b"/tmp\ntwo overridden\n"
    assert relative.stdout.decode() == f"{agent.workdir / 'sub'}\n"


@pytest.mark.asyncio
async def test_exec_default_cwd_is_roots_home(tmp_path: Path) -> None:
    running = start_agent(None)
    try:
        async with connected(running) as client:
            result = await client.exec("pwd")
    finally:
        running.stop()
    assert result.stdout.decode() == ROOT_HOME + "\n"


@pytest.mark.asyncio
async def test_exec_stdin_is_streamed_alongside_output(agent: RunningAgent) -> None:
    # 8 MiB through `cat`: more than both windows and the pipe buffers, so stdin and
    # output must flow at the same time.
    data = pattern(8 * 1024 * 1024)
    async with connected(agent) as client:
        echoed = await client.exec(["cat"], stdin=data)
        empty = await client.exec("wc -c", stdin=b"")
        no_stdin = await client.exec("cat; echo done")
    assert echoed.exit_code == 0 and echoed.stdout == data
    assert empty.stdout.strip() == b"0"
    assert no_stdin.stdout == b"done\n"  # stdin is /dev/null unless given


@pytest.mark.asyncio
async def test_stdin_pipelined_with_the_request_is_not_lost(agent: RunningAgent) -> None:
    reader, writer = await asyncio.open_unix_connection(str(agent.socket), limit=READ_BUFFER_LIMIT)
    request = {"argv": ["cat"], "stdin": True}
    writer.write(
        encode_frame({"sid": 1, "type": "request", "op": "exec", "args": request})
        + encode_frame({"sid": 1, "type": "data"}, b"sent before the process started")
        + encode_frame({"sid": 1, "type": "end"})
    )
    frames: list[Frame] = []
    while not frames or frames[-1].type not in ("response", ERROR):
        frame = await asyncio.wait_for(read_frame(reader), 5)
        assert frame is not None
        frames.append(frame)
    writer.close()
    assert frames[0].header["event"] == "started"
    assert b"".join(f.payload for f in frames if f.type == "data") == (
        b"sent before the process started"
    )
    assert frames[-1].header["result"]["exit_code"] == 0


@pytest.mark.asyncio
async def test_cancelling_a_wait_kills_the_process(agent: RunningAgent) -> None:
    async with connected(agent) as client:
        proc = await client.spawn(["sleep", "30"])
        waiting = asyncio.ensure_future(proc.wait())
        await asyncio.sleep(0.05)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await eventually(lambda: process_state(proc.pid) is None)
        assert (await client.exec("echo next")).stdout == b"next\n"


@pytest.mark.asyncio
async def test_exec_streams_output_while_the_process_runs(agent: RunningAgent) -> None:
    seen: list[tuple[str, bytes, float]] = []

    async def on_output(fd: str, data: bytes) -> None:
        seen.append((fd, data, time.monotonic()))

    async with connected(agent) as client:
        result = await client.exec("echo first; sleep 0.3; echo second >&2", on_output=on_output)
        finished = time.monotonic()
        sync_seen: list[str] = []
        await client.exec("echo x", on_output=lambda fd, data: sync_seen.append(fd))
    assert [(fd, data) for fd, data, _ in seen] == [("stdout", b"first\n"), ("stderr", b"second\n")]
    assert finished - seen[0][2] >= 0.2  # the first line arrived long before the exit
    assert result.stdout == b"first\n" and result.stderr == b"second\n"
    assert sync_seen == ["stdout"]


@pytest.mark.asyncio
async def test_exec_large_output(agent: RunningAgent) -> None:
    async with connected(agent) as client:
        result = await client.exec("head -c 20000000 /dev/zero | tr '\\0' x")
    assert len(result.stdout) == 20_000_000 and set(result.stdout) == {ord("x")}


@pytest.mark.asyncio
async def test_timeout_kills_the_whole_group_and_keeps_output(agent: RunningAgent) -> None:
    async with connected(agent) as client:
        result = await client.exec("sleep 100 & echo $!; echo started; sleep 100", timeout=0.5)
    assert result.timed_out and result.exit_code is None and result.signal == "SIGKILL"
    assert 400 < result.duration_ms < 3000
    background_pid, started = result.stdout.decode().split()
    assert started == "started"
    # The background sleep died with its group, and was reaped: no process, no zombie.
    await eventually(lambda: process_state(int(background_pid)) is None)


@pytest.mark.asyncio
async def test_signals_are_reported_by_name(agent: RunningAgent) -> None:
    async with connected(agent) as client:
        self_killed = await client.exec("kill -TERM $$")
        proc = await client.spawn(["sleep", "30"])
        await proc.signal("SIGINT")
        interrupted = await proc.wait()
        proc = await client.spawn("read line; echo got $line", stdin=True)
        await proc.send_stdin(b"hello\n")
        await proc.close_stdin()
        fed = await proc.wait()
        proc = await client.spawn(["sleep", "30"])
        await proc.signal(9)
        killed = await proc.wait()
    assert (self_killed.exit_code, self_killed.signal) == (None, "SIGTERM")
    assert (interrupted.exit_code, interrupted.signal) == (None, "SIGINT")
    assert (fed.stdout, fed.exit_code) == (b"got hello\n", 0)
    assert (killed.signal, killed.timed_out) == ("SIGKILL", False)


@pytest.mark.asyncio
async def test_exec_errors(agent: RunningAgent) -> None:
    async with connected(agent) as client:
        with pytest.raises(FileNotFoundInSandboxError, match="command not found"):
            await client.exec(["no-such-command-anywhere"])
        with pytest.raises(FileNotFoundInSandboxError, match="working directory"):
            await client.exec("true", cwd="/no/such/dir")
        with pytest.raises(InvalidConfigError, match="argv"):
            await client.exec([])
        with pytest.raises(InvalidConfigError, match="timeout"):
            await client.exec("true", timeout=-1)
        missing_in_shell = await client.exec("no-such-command-anywhere")
        assert (await client.ping())["pid"] == agent.pid  # still serving
    assert missing_in_shell.exit_code == 127


@pytest.mark.asyncio
async def test_many_concurrent_streams_on_one_connection(agent: RunningAgent) -> None:
    async with connected(agent) as client:

        async def file_round_trip(i: int) -> bytes:
            await client.write_file(f"concurrent/{i}.bin", pattern(300_000 + i))
            return b"".join([chunk async for chunk in client.read_file(f"concurrent/{i}.bin")])

        execs = asyncio.gather(
            *(client.exec(f"echo out{i}; echo err{i} >&2; exit {i % 7}") for i in range(50))
        )
        transfers = asyncio.gather(*(file_round_trip(i) for i in range(10)))
        results, contents = await asyncio.gather(execs, transfers)
    for i, result in enumerate(results):
        assert (result.stdout, result.stderr, result.exit_code) == (
            f"out{i}\n".encode(),
            f"err{i}\n".encode(),
            i % 7,
        )
    for i, content in enumerate(contents):
        assert content == pattern(300_000 + i)


# -- files ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_large_file_round_trip(agent: RunningAgent) -> None:
    size = 64 * 1024 * 1024
    block = os.urandom(1024 * 1024)
    sent = hashlib.sha256()

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(size // len(block)):
            piece = i.to_bytes(4, "big") + block[4:]
            sent.update(piece)
            yield piece

    async with connected(agent) as client:
        entry = await client.write_file("big/64m.bin", chunks())
        received = hashlib.sha256()
        total = 0
        async for chunk in client.read_file("big/64m.bin"):
            assert len(chunk) <= CHUNK_SIZE
            received.update(chunk)
            total += len(chunk)
        inside = await client.exec(["sha256sum", "big/64m.bin"])
        await client.remove("big", recursive=True)
    assert entry["size"] == size and total == size
    assert received.hexdigest() == sent.hexdigest()
    assert inside.stdout.split()[0].decode() == sent.hexdigest()


@pytest.mark.asyncio
async def test_write_and_read_files(agent: RunningAgent) -> None:
    async with connected(agent) as client:
        entry = await client.write_file(str(agent.workdir / "w/deep/er/a.txt"), "héllo".encode())
        empty = await client.write_file("w/empty", b"")
        script = await client.write_file("w/run.sh", b"#!/bin/sh\necho ran\n", mode=0o755)
        ran = await client.exec(["./w/run.sh"])
        await client.write_file("w/deep/er/a.txt", b"replaced")  # overwrite keeps mode
        content = b"".join([c async for c in client.read_file("w/deep/er/a.txt")])
        nothing = [c async for c in client.read_file("w/empty")]
    assert set(entry) == ENTRY_KEYS
    assert entry["path"] == str(agent.workdir / "w/deep/er/a.txt")
    assert (entry["name"], entry["type"], entry["size"]) == ("a.txt", "file", 6)
    assert entry["mode"] == 0o644
    assert empty["size"] == 0 and nothing == []
    assert script["mode"] == 0o755 and ran.stdout == b"ran\n"
    assert content == b"replaced"
    assert (agent.workdir / "w/deep/er/a.txt").stat().st_mode & 0o777 == 0o644
    leftovers = [p.name for p in (agent.workdir / "w").rglob("*.sandlot-part")]
    assert leftovers == []


@pytest.mark.asyncio
async def test_upload_from_a_reused_buffer(agent: RunningAgent) -> None:
    buffer = bytearray(CHUNK_SIZE * 3)

    async def refilled() -> AsyncIterator[bytearray]:
        for fill in b"abcd":
            buffer[:] = bytes([fill]) * len(buffer)  # the same buffer, new content
            yield buffer

    async with connected(agent) as client:
        await client.write_file("reused.bin", refilled())  # type: ignore[arg-type]
    expected = b"".join(bytes([fill]) * len(buffer) for fill in b"abcd")
    assert (agent.workdir / "reused.bin").read_bytes() == expected


@pytest.mark.asyncio
async def test_write_through_a_symlink_replaces_its_target(agent: RunningAgent) -> None:
    base = agent.workdir / "symwrite"
    base.mkdir()
    (base / "target.txt").write_text("old")
    (base / "link").symlink_to("target.txt")
    async with connected(agent) as client:
        await client.write_file(str(base / "link"), b"new")
    assert (base / "link").is_symlink()
    assert (base / "target.txt").read_text() == "new"


@pytest.mark.asyncio
async def test_file_read_and_write_errors(agent: RunningAgent) -> None:
    (agent.workdir / "errs").mkdir()
    (agent.workdir / "errs/file").write_text("x")
    async with connected(agent) as client:
        reader = client.read_file("errs/missing")
        with pytest.raises(FileNotFoundInSandboxError) as missing:
            await reader.__anext__()  # before any chunk
        with pytest.raises(FileOperationError, match="is a directory"):
            async for _ in client.read_file("errs"):
                pass
        with pytest.raises(FileOperationError, match="is a directory"):
            await client.write_file("errs", b"data")
        with pytest.raises(FileOperationError, match="not a directory"):
            await client.write_file("errs/file/child", pattern(3 * STREAM_WINDOW))
        with pytest.raises(InvalidConfigError, match="path"):
            await client.stat("")
    assert missing.value.code == "FILE_NOT_FOUND"
    assert sorted(p.name for p in (agent.workdir / "errs").iterdir()) == ["file"]


@pytest.mark.asyncio
async def test_stat_and_list_dir_entries(agent: RunningAgent) -> None:
    base = agent.workdir / "listing"
    (base / "sub/inner").mkdir(parents=True)
    (base / "f.txt").write_text("12345")
    (base / "f.txt").chmod(0o640)
    (base / "sub/g.txt").write_text("g")
    (base / "sub/inner/h.txt").write_text("h")
    (base / "link").symlink_to("f.txt")
    (base / "dirlink").symlink_to("sub")
    async with connected(agent) as client:
        entries = await client.list_dir(str(base))
        deep = await client.list_dir("listing", depth=3)
        via_link = await client.list_dir(str(base / "dirlink"))
        file_stat = await client.stat("listing/f.txt")
        link_stat = await client.stat(str(base / "link"))
        with pytest.raises(FileNotFoundInSandboxError):
            await client.stat("listing/nope")
        with pytest.raises(FileNotFoundInSandboxError):
            await client.list_dir("listing/nope")
        with pytest.raises(FileOperationError, match="not a directory"):
            await client.list_dir("listing/f.txt")
        with pytest.raises(InvalidConfigError, match="depth"):
            await client.list_dir("listing", depth=0)
    assert [e["name"] for e in entries] == ["dirlink", "f.txt", "link", "sub"]
    assert all(set(e) == ENTRY_KEYS for e in entries)
    by_name = {e["name"]: e for e in entries}
    assert by_name["f.txt"] == file_stat
    assert file_stat["path"] == str(base / "f.txt")
    assert (file_stat["type"], file_stat["size"], file_stat["mode"]) == ("file", 5, 0o640)
    assert file_stat["symlink_target"] is None
    assert abs(file_stat["mtime"] - (base / "f.txt").stat().st_mtime) < 1e-3
    assert by_name["sub"]["type"] == "dir"
    assert (by_name["link"]["type"], by_name["link"]["symlink_target"]) == ("symlink", "f.txt")
    assert link_stat == by_name["link"]
    assert by_name["dirlink"]["type"] == "symlink"
    relative = [str(Path(e["path"]).relative_to(base)) for e in deep]
    assert relative == [
        "dirlink",
        "f.txt",
        "link",
        "sub",
        "sub/g.txt",
        "sub/inner",
        "sub/inner/h.txt",
    ]  # symlinked directories are listed, not entered
    assert [e["name"] for e in via_link] == ["g.txt", "inner"]


@pytest.mark.asyncio
async def test_mkdir(agent: RunningAgent) -> None:
    async with connected(agent) as client:
        made = await client.mkdir("mk")
        nested = await client.mkdir("mk/a/b/c", parents=True)
        again = await client.mkdir("mk/a/b/c", parents=True)
        with pytest.raises(FileExistsInSandboxError) as exists:
            await client.mkdir("mk")
        with pytest.raises(FileNotFoundInSandboxError):
            await client.mkdir("mk/x/y")
        await client.write_file("mk/file", b"")
        with pytest.raises(FileExistsInSandboxError, match="not a directory"):
            await client.mkdir("mk/file", parents=True)
    assert made["type"] == "dir" and made["path"] == str(agent.workdir / "mk")
    assert nested["type"] == "dir" and again == nested
    assert exists.value.code == "FILE_EXISTS"
    assert (agent.workdir / "mk/a/b/c").is_dir()


@pytest.mark.asyncio
async def test_remove(agent: RunningAgent) -> None:
    base = agent.workdir / "rm"
    (base / "full/deeper").mkdir(parents=True)
    (base / "full/deeper/f").write_text("x")
    (base / "empty").mkdir()
    (base / "file").write_text("x")
    (base / "link").symlink_to("full")
    async with connected(agent) as client:
        await client.remove("rm/file")
        await client.remove("rm/empty")
        await client.remove("rm/link")
        with pytest.raises(FileOperationError, match="directory not empty") as not_empty:
            await client.remove("rm/full")
        with pytest.raises(FileNotFoundInSandboxError):
            await client.remove("rm/file")
        assert (base / "full/deeper/f").exists()  # the link went, not its target
        await client.remove("rm/full", recursive=True)
    assert not_empty.value.code == "FILE_OPERATION_FAILED"
    assert list(base.iterdir()) == []


@pytest.mark.asyncio
async def test_replace(agent: RunningAgent) -> None:
    base = agent.workdir / "edit"
    base.mkdir()
    target = base / "r.py"
    target.write_text("print('hi')\n")
    target.chmod(0o600)
    (base / "many").write_bytes(b"a \xff a a")
    async with connected(agent) as client:
        assert await client.replace("edit/r.py", "hi", "héllo") == 1
        with pytest.raises(FileOperationError, match="not found") as absent:
            await client.replace("edit/r.py", "absent", "x")
        with pytest.raises(FileOperationError, match="occurs 3 times") as ambiguous:
            await client.replace("edit/many", "a", "b")
        assert (base / "many").read_bytes() == b"a \xff a a"
        assert await client.replace("edit/many", "a", "b", count=2) == 2
        assert (base / "many").read_bytes() == b"b \xff b a"
        assert await client.replace("edit/many", "b", "c", count=-1) == 2
        with pytest.raises(InvalidConfigError, match="count"):
            await client.replace("edit/many", "c", "d", count=0)
        with pytest.raises(FileNotFoundInSandboxError):
            await client.replace("edit/nope", "a", "b")
    assert target.read_text() == "print('héllo')\n"
    assert target.stat().st_mode & 0o777 == 0o600
    assert (base / "many").read_bytes() == b"c \xff c a"  # non-UTF-8 bytes untouched
    assert absent.value.details["occurrences"] == 0
    assert ambiguous.value.details["occurrences"] == 3


@pytest.mark.asyncio
async def test_downloads_stop_at_the_window_when_nobody_reads(agent: RunningAgent) -> None:
    (agent.workdir / "slow.bin").write_bytes(pattern(8 * STREAM_WINDOW))
    async with connected(agent) as client:
        reader = client.read_file("slow.bin")
        first = await reader.__anext__()
        await asyncio.sleep(0.3)  # a stalled consumer
        (stream,) = client._streams.values()
        buffered = stream.receive_window.outstanding
        rest = b"".join([chunk async for chunk in reader])
    assert buffered <= STREAM_WINDOW + CHUNK_SIZE
    assert first + rest == pattern(8 * STREAM_WINDOW)


@pytest.mark.asyncio
async def test_bad_requests_are_answered_and_bad_frames_cost_only_their_connection(
    agent: RunningAgent,
) -> None:
    reader, writer = await asyncio.open_unix_connection(str(agent.socket), limit=READ_BUFFER_LIMIT)
    writer.write(encode_frame({"sid": 1, "type": "request", "op": "format_disk", "args": {}}))
    writer.write(encode_frame({"sid": 2, "type": "request", "op": "stat", "args": [1]}))
    writer.write(encode_frame({"sid": 3, "type": "request", "op": "stat", "args": {}}))
    answers = {}
    for _ in range(3):
        frame = await asyncio.wait_for(read_frame(reader), 5)
        assert frame is not None and frame.type == ERROR
        answers[frame.sid] = frame.header["error"]
    assert {a["code"] for a in answers.values()} == {"INVALID_CONFIG"}
    assert "unknown operation" in answers[1]["message"]
    # A frame announcing a 4 GiB header is refused: the agent hangs up on this connection...
    writer.write(b"\xff\xff\xff\xff\x00\x00\x00\x00")
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    # ...and only on this one.
    async with connected(agent) as client:
        assert (await client.exec("echo still here")).stdout == b"still here\n"


# -- processes outlive connections; connections fail fast ----------------------------


@pytest.mark.asyncio
async def test_client_dropping_mid_upload_leaves_no_file_and_processes_run_on(
    agent: RunningAgent,
) -> None:
    base = agent.workdir / "dropped"
    base.mkdir()
    first = await AgentClient.connect(agent.socket)
    proc = await first.spawn(f"sleep 0.3; touch {base}/marker")
    hold = asyncio.Event()

    async def stalled_upload() -> AsyncIterator[bytes]:
        yield pattern(CHUNK_SIZE)
        yield pattern(CHUNK_SIZE)
        await hold.wait()

    upload = asyncio.ensure_future(first.write_file(str(base / "partial.bin"), stalled_upload()))
    await eventually(lambda: any(base.glob("*.sandlot-part")))
    await first.close()
    with pytest.raises(SandboxUnavailableError):
        await asyncio.wait_for(upload, 2)
    await eventually(lambda: list(base.iterdir()) == [])  # the partial upload is gone
    async with connected(agent) as second:
        assert (await second.exec("echo alive")).stdout == b"alive\n"
    await eventually(lambda: (base / "marker").exists())  # the process outlived its client
    await eventually(lambda: process_state(proc.pid) is None)  # and was reaped


@pytest.mark.asyncio
async def test_agent_killed_during_exec_fails_pending_calls(own_agent: RunningAgent) -> None:
    client = await AgentClient.connect(own_agent.socket)
    procs = [await client.spawn(["sleep", "30"]) for _ in range(3)]
    pending = [asyncio.ensure_future(proc.wait()) for proc in procs]
    await asyncio.sleep(0.1)
    own_agent.proc.kill()
    started = time.monotonic()
    try:
        for call in pending:
            with pytest.raises(SandboxUnavailableError):
                await asyncio.wait_for(call, 2)
        assert time.monotonic() - started < 1
        assert client.closed
        with pytest.raises(SandboxUnavailableError):
            await client.ping()
    finally:
        await client.close()
        for proc in procs:  # orphaned by the dead agent
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.asyncio
async def test_agent_killed_during_upload_fails_it(own_agent: RunningAgent) -> None:
    client = await AgentClient.connect(own_agent.socket)

    async def endless() -> AsyncIterator[bytes]:
        while True:
            yield pattern(CHUNK_SIZE)
            await asyncio.sleep(0.01)

    upload = asyncio.ensure_future(client.write_file("endless.bin", endless()))
    await eventually(lambda: any(own_agent.workdir.glob("*.sandlot-part")))
    own_agent.proc.kill()
    with pytest.raises(SandboxUnavailableError):
        await asyncio.wait_for(upload, 2)
    await client.close()


@pytest.mark.asyncio
async def test_double_forked_orphans_are_adopted_and_reaped(agent: RunningAgent) -> None:
    async with connected(agent) as client:
        result = await client.exec("(sleep 0.4 >/dev/null 2>&1 & echo $!)")
        orphan = int(result.stdout)
        # Adopted by the agent, as PID 1 would adopt it, then reaped once it exits.
        assert parent_of(orphan) == agent.pid, f"orphan {orphan} has another parent"
        await eventually(lambda: process_state(orphan) is None)
    await eventually(lambda: zombie_children(agent.pid) == [], timeout=1)


@pytest.mark.asyncio
async def test_sigterm_stops_the_agent_and_its_processes(own_agent: RunningAgent) -> None:
    client = await AgentClient.connect(own_agent.socket)
    proc = await client.spawn(["sleep", "30"])
    waiting = asyncio.ensure_future(proc.wait())
    own_agent.proc.terminate()
    with pytest.raises(SandboxUnavailableError):
        await asyncio.wait_for(waiting, 5)
    assert await asyncio.to_thread(own_agent.proc.wait, 5) == 0
    assert not own_agent.socket.exists()
    await eventually(lambda: process_state(proc.pid) in (None, "Z"))
    await client.close()


def listening_sockets() -> int:
    """How many listening unix sockets this process holds open."""
    listening = {
        fields[6]
        for fields in map(str.split, Path("/proc/net/unix").read_text().splitlines()[1:])
        if fields[3] == "00010000"
    }
    links = [os.readlink(fd) for fd in Path("/proc/self/fd").iterdir() if fd.is_symlink()]
    held = {link[len("socket:[") : -1] for link in links if link.startswith("socket:[")}
    return len(held & listening)


@pytest.mark.asyncio
async def test_wake_ups_handled_together_open_one_listener(tmp_path: Path) -> None:
    # A snapshot's thaw and its end each wake a quiesced agent, and both signals can be
    # handled in one turn of its loop. A second listener would take the socket's path
    # from the first and leave that one open; the next checkpoint would then dump a
    # socket bound to a deleted path, which cannot be restored.
    socket = Path(tempfile.mkdtemp(prefix="sandlot-agent-")) / "agent.sock"
    agent = Agent(str(socket), str(tmp_path))
    before = listening_sockets()
    try:
        await asyncio.gather(agent._relisten(), agent._relisten())
        assert listening_sockets() == before + 1
        client = await AgentClient.connect(socket)
        assert (await client.ping())["pid"] == os.getpid()
        await client.close()
    finally:
        agent._stop_serving()
        shutil.rmtree(socket.parent, ignore_errors=True)
