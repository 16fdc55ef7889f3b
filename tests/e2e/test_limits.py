"""cgroup limits take effect: CPUs, memory, pids."""

from __future__ import annotations

from sandlot import Sandbox, Sandlot


def test_vcpus_visible_to_nproc(client: Sandlot) -> None:
    with Sandbox.create(resources={"vcpus": 1}, client=client) as sbx:
        assert sbx.commands.run("nproc").stdout.strip() == "1"
        quota = sbx.commands.run("python3 -c 'import os; print(len(os.sched_getaffinity(0)))'")
        assert quota.stdout.strip() == "1"


def test_memory_hog_is_killed_and_reported(client: Sandlot) -> None:
    with Sandbox.create(resources={"memory_mb": 256}, client=client) as sbx:
        r = sbx.commands.run("python3 -c 'b = bytearray(400 * 1024 * 1024); print(len(b))'")
        assert r.exit_code is None and r.signal == "SIGKILL"
        assert r.oom_killed
        usage = sbx.usage()
        assert usage.oom_kills >= 1 and usage.memory_limit_bytes == 256 * 1024 * 1024
        # The sandbox survives its hog.
        assert sbx.commands.run("echo alive").stdout == "alive\n"


def test_many_small_hogs_never_take_the_agent(client: Sandlot) -> None:
    """Memory spread over many processes: the sandbox's OOM killer takes commands, and
    the agent (PID 1, smaller than any of them only by a little) is never its pick."""
    hog = "python3 -c 'b = bytearray(40 << 20); import time; time.sleep(30)'"
    hogs = f"for i in $(seq 12); do {hog} & done; wait"
    with Sandbox.create(resources={"memory_mb": 256}, client=client) as sbx:
        # The score is set just after the command starts, before what it starts next.
        adj = sbx.commands.run("sleep 0.1; cat /proc/self/oom_score_adj /proc/1/oom_score_adj")
        assert adj.stdout == "500\n0\n"
        r = sbx.commands.run(hogs, timeout=60)
        assert r.exit_code == 0 and sbx.usage().oom_kills >= 1
        assert sbx.commands.run("echo alive").stdout == "alive\n"
        assert sbx.info.status == "running"


def test_fork_bomb_is_contained(client: Sandlot) -> None:
    bomb = (
        "import os, signal\n"
        "pids = []\n"
        "try:\n"
        "    while True:\n"
        "        pids.append(os.posix_spawn('/bin/sleep', ['sleep', '60'], os.environ))\n"
        "except OSError as e:\n"
        "    print(len(pids), e.errno)\n"
        "for pid in pids:\n"
        "    os.kill(pid, signal.SIGKILL)\n"
        "    os.waitpid(pid, 0)\n"
    )
    with Sandbox.create(resources={"memory_mb": 2048}, client=client) as sbx:
        sbx.files.write("/tmp/bomb.py", bomb)
        r = sbx.commands.run("python3 /tmp/bomb.py", timeout=120)
        count, errno = r.stdout.split()
        assert 1000 < int(count) < 4096 and errno == "11"  # EAGAIN from the pids controller
        assert sbx.commands.run("echo ok").stdout == "ok\n"  # usable once the bomb is gone


def test_disk_quota_is_enforced_inside_not_on_the_host(client: Sandlot) -> None:
    with Sandbox.create(resources={"disk": "1GB"}, client=client) as sbx:
        usage = sbx.usage()
        assert 0.9 * 2**30 < usage.disk_limit_bytes <= 2**30
        r = sbx.commands.run("dd if=/dev/zero of=/workspace/fill bs=1M count=1200", timeout=120)
        assert r.exit_code != 0 and "No space left on device" in r.stderr
        assert sbx.usage().disk_bytes > 0.9 * 2**30
        sbx.commands.run("rm /workspace/fill")
        assert (
            sbx.commands.run("echo fine > /workspace/after; cat /workspace/after").stdout
            == "fine\n"
        )


def test_a_bigger_disk_than_the_warm_default(client: Sandlot) -> None:
    with Sandbox.create(resources={"disk": "20GB"}, client=client) as sbx:
        assert sbx.usage().disk_limit_bytes > 19 * 2**30
        assert sbx.commands.run("df -h / | tail -1").exit_code == 0
