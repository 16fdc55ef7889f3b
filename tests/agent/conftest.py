"""A real agent on the host, for the agent's tests, and the helpers they share.

The agent runs exactly as in a sandbox (minus the namespaces): a subprocess listening on
a unix socket, reaping its children, serving many streams per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sandlot.agent.protocol import CHUNK_SIZE
from sandlot.runtime.agent_client import AgentClient

REPO_ROOT = Path(__file__).resolve().parents[2]
ROOT_HOME = "/root" if os.path.isdir("/root") and os.access("/root", os.X_OK) else "/"


@dataclass
class RunningAgent:
    proc: subprocess.Popen[bytes]
    socket: Path
    workdir: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.socket.parent, ignore_errors=True)


def start_agent(workdir: Path | None, *extra_args: str) -> RunningAgent:
    # Unix socket paths are short (108 bytes): keep the socket out of pytest's long tmp paths.
    socket_dir = Path(tempfile.mkdtemp(prefix="sandlot-agent-"))
    sock = socket_dir / "agent.sock"
    args = [sys.executable, "-m", "sandlot.agent", "--socket", str(sock), *extra_args]
    if workdir is not None:
        args += ["--workdir", str(workdir)]
    env = {**os.environ, "SANDLOT_AGENT_TEST": "from-agent-env"}
    proc = subprocess.Popen(args, cwd=REPO_ROOT, env=env)
    return RunningAgent(proc, sock, workdir or Path("/"))


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAgent]:
    """One agent shared by the tests that do not break it."""
    running = start_agent(tmp_path_factory.mktemp("workdir"))
    yield running
    running.stop()


@pytest.fixture
def own_agent(tmp_path: Path) -> Iterator[RunningAgent]:
    """An agent of the test's own, for tests that kill it."""
    workdir = tmp_path / "workdir"
    workdir.mkdir()
    running = start_agent(workdir)
    yield running
    running.stop()


@contextlib.asynccontextmanager
async def connected(running: RunningAgent) -> AsyncIterator[AgentClient]:
    client = await AgentClient.connect(running.socket, timeout=10)
    try:
        yield client
    finally:
        await client.close()


def process_state(pid: int) -> str | None:
    """The /proc state letter of `pid` ("Z" for a zombie), None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):  # ESRCH: it vanished while we read
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def zombie_children(pid: int) -> list[int]:
    zombies = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError):
                if parent_of(int(entry)) == pid and process_state(int(entry)) == "Z":
                    zombies.append(int(entry))
    return zombies


async def eventually(check: object, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not callable(check) or not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def pattern(size: int) -> bytes:
    block = hashlib.sha256(b"seed").digest() * (CHUNK_SIZE // 32)
    return (block * (size // len(block) + 1))[:size]
