"""The boundaries between a sandbox and its host, each asserted by a failing attempt,
on every backend (see conftest.py)."""

from __future__ import annotations

from sandlot import Sandbox, Sandlot
from sandlot.runtime.oci import run_root_for
from sandlot.testing import ServerProcess


def test_host_processes_are_not_visible(sandbox: Sandbox, server: ServerProcess) -> None:
    assert server.proc is not None
    r = sandbox.commands.run("ls /proc | grep -E '^[0-9]+$'")
    pids = {int(p) for p in r.stdout.split()}
    assert 1 in pids and len(pids) < 20, pids
    comm = sandbox.commands.run("cat /proc/1/cmdline | tr '\\0' ' '").stdout
    assert "agent" in comm  # PID 1 is the sandbox's own agent, not the host's init
    r = sandbox.commands.run(f"kill -0 {server.proc.pid}")
    assert r.exit_code != 0


def test_root_inside_is_not_root_outside(
    sandbox: Sandbox, server: ServerProcess, runtime: str
) -> None:
    r = sandbox.commands.run("id -u; cat /proc/self/uid_map; touch /made-inside")
    uid, inside, outside, size = r.stdout.split()
    assert uid == "0"
    if runtime == "runsc":
        # gVisor's kernel shows its own identity map: its root is root of that kernel,
        # which runs as the unprivileged host uid the files are written as.
        assert (inside, outside, size) == ("0", "0", "4294967295")
    else:
        assert inside == "0" and int(outside) >= 100000
    upper = run_root_for(server.data_dir) / sandbox.id / "disk" / "upper" / "made-inside"
    assert upper.stat().st_uid >= 100000
    if runtime == "oci":
        assert upper.stat().st_uid == int(outside)
    # The host's root-owned files stay out of reach even where the sandbox can see them.
    assert sandbox.commands.run("echo x > /proc/sys/kernel/hostname").exit_code != 0


PRIVILEGED = {
    "mount -t tmpfs none /mnt": "mount",
    "python3 -c 'import socket as s; s.socket(s.AF_PACKET, s.SOCK_RAW)'": "raw socket",
    "date -s '2000-01-01'": "clock change",
    "cat /dev/kmsg": "kernel log",
}
"""Commands that need the host's privilege, refused on every backend."""


def assert_refused(sandbox: Sandbox, checks: dict[str, str]) -> None:
    for command, what in checks.items():
        r = sandbox.commands.run(command)
        assert r.exit_code != 0, f"{what} was allowed: {r.stdout} {r.stderr}"


def test_privileged_operations_are_refused(sandbox: Sandbox, runtime: str) -> None:
    assert_refused(sandbox, PRIVILEGED)
    if runtime == "oci":
        assert_refused(
            sandbox,
            {"unshare -U true": "new user namespace", "mknod /tmp/sda b 8 0": "device node"},
        )
        return
    # What gVisor's kernel allows of its own (a user namespace, a device node) reaches
    # nothing of the host's.
    inner = sandbox.commands.run("unshare -U cat /proc/self/uid_map; unshare -U id -u")
    assert inner.exit_code == 0 and inner.stdout.split()[-1] == "65534"  # nobody in there
    node = sandbox.commands.run("mknod /tmp/sda b 8 0 && head -c 512 /tmp/sda | wc -c")
    assert node.stdout.strip() in ("", "0"), "a block device of the host was readable"


def test_sandboxes_cannot_see_each_other(client: Sandlot, runtime: str) -> None:
    with (
        Sandbox.create(client=client, runtime=runtime) as a,
        Sandbox.create(client=client, runtime=runtime) as b,
    ):
        a.files.write("/workspace/mine", "a")
        assert not b.files.exists("/workspace/mine")
        a.commands.run("sleep 300 > /dev/null 2>&1 &")
        r = b.commands.run("ps -eo comm")
        assert "sleep" not in r.stdout
