"""A sandbox that exhausts its processes, memory or disk hurts only itself: its limits
stop it, the host and a sandbox beside it stay responsive, and nothing of it is left on
the host afterwards.

runc and gVisor stop the same attacks differently. Under runc the host kernel charges
each process to the sandbox's cgroup: a fork bomb meets the pids limit (EAGAIN) and a
memory hog is OOM-killed alone. Under gVisor every process inside lives in the sandbox's
kernel, a few host processes whose memory holds all of it (each process inside also
costs a stub process and its page tables on the host): the host's limits end that
kernel, and with it the whole sandbox, which the server then reports as failed.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from sandlot import CommandHandle, Sandbox, Sandlot
from sandlot.errors import FileOperationError
from sandlot.runtime.bundle import USERNS_HOST_BASE
from sandlot.testing import ServerProcess
from tests.security.probes import host_cgroup_file, host_memory_limit

FORK_BOMB = r"""
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

int main(void) {
    for (;;) {
        if (fork() >= 0)
            continue;  /* parent and child both fork on */
        int err = errno;
        if (open("/tmp/refused", O_CREAT | O_EXCL | O_WRONLY, 0600) >= 0) {
            printf("fork refused: errno %d\n", err);  /* the first refusal, once */
            fflush(stdout);
        }
        for (;;)
            pause();  /* hold the process slot */
    }
}
"""
"""Every process forks until the kernel refuses, then holds its place: the pids limit is
what is tested. (A bomb whose processes keep retrying adds a storm of failing forks; on
a 2-core host that slowed a neighbouring sandbox's commands to tens of seconds, a
contention the pids limit does not address.)"""

STOPPED = "sandbox stopped unexpectedly"
MIB = 1024 * 1024


def assert_responsive(host_and: Sandbox) -> None:
    """The host still starts a process at once, and the sandbox beside answers."""
    started = time.monotonic()
    subprocess.run(["true"], check=True)
    assert time.monotonic() - started < 1, "the host could not start a process"
    started = time.monotonic()
    assert host_and.commands.run("echo ok", timeout=10).stdout == "ok\n"
    assert time.monotonic() - started < 5, "the sandbox beside did not answer"


def leftover_processes(server: ServerProcess) -> list[int]:
    """Zombie children of the server that ran as a sandbox's uid: processes of destroyed
    sandboxes nobody collected, each holding a host pid."""
    assert server.proc is not None
    found = []
    for proc in Path("/proc").iterdir():
        try:
            state, ppid = (proc / "stat").read_text().rsplit(")", 1)[1].split()[:2]
            status = (proc / "status").read_text()
        except (OSError, ValueError):
            continue  # not a process, or gone meanwhile
        uid = int(status.split("\nUid:", 1)[1].split()[0])
        if state == "Z" and int(ppid) == server.proc.pid and uid >= USERNS_HOST_BASE:
            found.append(int(proc.name))
    return found


def wait_for_end(client: Sandlot, sandbox: Sandbox, bystander: Sandbox, within: float) -> str:
    """Poll until the sandbox leaves `running`, checking the neighbours meanwhile; returns
    its status and reason."""
    deadline = time.monotonic() + within
    while (info := Sandbox.get(sandbox.id, client=client).info).status == "running":
        assert time.monotonic() < deadline, f"{sandbox.id} still running after {within} s"
        assert_responsive(bystander)
        time.sleep(0.2)
    return f"{info.status}: {info.status_reason}"


def first_line(handle: CommandHandle, within: float) -> bytes:
    output, deadline = b"", time.monotonic() + within
    while b"\n" not in output and time.monotonic() < deadline:
        output += b"".join(chunk.data for chunk in handle.pump(0.1))
    return output


def test_a_fork_bomb_is_contained(client: Sandlot, server: ServerProcess, runtime: str) -> None:
    # gVisor's processes cost the host much more memory each, so its memory limit binds
    # before the pids limit; a small one ends the bomb in seconds rather than a minute.
    memory = 1024 if runtime == "oci" else 256
    with Sandbox.create(client=client, runtime=runtime) as bystander:
        bomb = Sandbox.create(client=client, runtime=runtime, resources={"memory_mb": memory})
        try:
            bomb.files.write("/tmp/bomb.c", FORK_BOMB)
            assert bomb.commands.run("gcc -O1 -o /tmp/bomb /tmp/bomb.c").exit_code == 0
            pids_max = int(host_cgroup_file(server, bomb.id, "pids.max").read_text())
            with bomb.commands.run("/tmp/bomb", background=True) as handle:
                if runtime == "oci":
                    assert first_line(handle, within=10) == b"fork refused: errno 11\n"  # EAGAIN
                    current = host_cgroup_file(server, bomb.id, "pids.current").read_text()
                    assert int(current) == pids_max == 4096
                    assert_responsive(bystander)
                    with pytest.raises(FileOperationError, match="temporarily unavailable"):
                        bomb.commands.run("echo no room")  # not even one more process
                else:
                    ended = wait_for_end(client, bomb, bystander, within=60)
                    assert ended == f"error: {STOPPED}"
        finally:
            if Sandbox.get(bomb.id, client=client).status != "error":
                bomb.kill()
        assert_responsive(bystander)
    assert leftover_processes(server) == []


def test_memory_exhaustion_is_contained(
    client: Sandlot, server: ServerProcess, runtime: str
) -> None:
    hog = "python3 -c 'b = bytearray(400 * 1024 * 1024); print(len(b))'"
    with Sandbox.create(client=client, runtime=runtime) as bystander:
        sbx = Sandbox.create(client=client, runtime=runtime, resources={"memory_mb": 256})
        try:
            assert host_memory_limit(server, sbx.id) == 256 * MIB
            assert sbx.usage().memory_limit_bytes == 256 * MIB
            if runtime == "oci":
                r = sbx.commands.run(hog)
                assert (r.exit_code, r.signal, r.oom_killed) == (None, "SIGKILL", True)
                assert sbx.usage().oom_kills >= 1
                assert sbx.commands.run("echo alive").stdout == "alive\n"
            else:
                with sbx.commands.run(hog, background=True):
                    ended = wait_for_end(client, sbx, bystander, within=30)
                assert ended == f"error: {STOPPED}"
        finally:
            if Sandbox.get(sbx.id, client=client).status != "error":
                sbx.kill()
        assert_responsive(bystander)
    assert leftover_processes(server) == []


def test_a_full_disk_stops_at_the_sandboxs_size(
    client: Sandlot, server: ServerProcess, runtime: str
) -> None:
    free_before = shutil.disk_usage(server.data_dir).free
    with Sandbox.create(client=client, runtime=runtime, resources={"disk": "1GB"}) as sbx:
        image = server.data_dir / "sandboxes" / sbx.id / "disk.img"
        size = image.stat().st_size
        assert size == 1024 * MIB and sbx.usage().disk_limit_bytes <= size
        r = sbx.commands.run("dd if=/dev/zero of=/workspace/fill bs=1M count=1200", timeout=120)
        assert r.exit_code == 1
        assert "dd: error writing '/workspace/fill': No space left on device" in r.stderr
        assert sbx.usage().disk_bytes > 0.9 * size
        # On the host the sandbox's disk is a sparse image: it cannot grow past its size.
        assert image.stat().st_size == size and image.stat().st_blocks * 512 <= size
        free_after = shutil.disk_usage(server.data_dir).free
        assert free_before - free_after < size + 256 * MIB, "the host's disk filled up"
        sbx.commands.run("rm /workspace/fill")
        after = sbx.commands.run("echo fine > /workspace/after && cat /workspace/after")
        assert after.stdout == "fine\n"
