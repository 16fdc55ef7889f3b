"""The host kernel's privileged interfaces, each refused with its exact errno.

Under runc the host kernel itself refuses (the user namespace, the dropped capabilities
and the seccomp filter); under gVisor the sandbox's calls reach gVisor's own kernel, which
refuses most the same way and answers the rest for itself (a device node, a nested
namespace), reaching nothing of the host's: those answers are asserted as what they are.
"""

from __future__ import annotations

import os
import re
import socket
import time
from pathlib import Path

from sandlot import Sandbox
from sandlot.testing import ServerProcess
from tests.security.probes import host_disk, probe


def test_kernel_modules_cannot_be_loaded_or_removed(sandbox: Sandbox) -> None:
    assert probe(sandbox, "modules") == {
        "init_module": "EPERM",
        "finit_module": "EPERM",
        "delete_module": "EPERM",
    }


def test_raw_sockets_are_refused(sandbox: Sandbox, runtime: str) -> None:
    kinds = ("AF_INET/SOCK_RAW", "AF_INET6/SOCK_RAW", "AF_PACKET/SOCK_RAW", "AF_PACKET/SOCK_DGRAM")
    found = probe(sandbox, "raw_sockets")
    if runtime == "oci":
        assert found == {**dict.fromkeys(kinds, "EPERM"), "new user namespace": "EPERM"}
    else:
        # Without CAP_NET_RAW gVisor refuses as Linux does. As root of a user namespace
        # of its own, gVisor lets the capability check pass, but its use of the host's
        # network stack offers no raw sockets at all.
        assert found == {
            **dict.fromkeys(kinds, "EPERM"),
            "new user namespace": "ok",
            **{f"nested: {kind}": "EAFNOSUPPORT" for kind in kinds},
        }


def test_io_uring_and_vsock_are_not_there(sandbox: Sandbox) -> None:
    """Denied by the seccomp filter under runc; gVisor's kernel offers neither."""
    assert probe(sandbox, "host_only_channels") == {
        "io_uring_setup": "ENOSYS",
        "io_uring_enter": "ENOSYS",
        "io_uring_register": "ENOSYS",
        "AF_VSOCK/SOCK_STREAM": "EAFNOSUPPORT",
        "AF_VSOCK/SOCK_DGRAM": "EAFNOSUPPORT",
    }


def test_the_agent_cannot_be_traced_or_robbed_of_its_connection(
    sandbox: Sandbox, runtime: str
) -> None:
    """The agent is not dumpable: nothing else in the sandbox, root included, may trace
    it or take the descriptor of its connection to the host."""
    found = probe(sandbox, "take_the_agent")
    taken = {k: v for k, v in found.items() if k.startswith("pidfd_")}
    assert found["ptrace_attach"] == found["ptrace_seize"] == "EPERM"
    if runtime == "oci":
        assert set(taken.values()) == {"EPERM"}, found
        assert (found["process_vm_readv"], found["fd link"]) == ("EPERM", "EACCES")
    else:
        # gVisor has no pidfd_open (so no pidfd_getfd) and does not hide a process's
        # descriptor links for its dumpable flag: the links name a host fd it holds,
        # which nothing inside can open or take.
        assert taken == {"pidfd_open": "ENOSYS"}
        assert re.fullmatch(r"host:\[\d+\]", str(found["fd link"])), found  # the number varies


def test_host_processes_cannot_be_seen_signalled_or_traced(
    sandbox: Sandbox, server: ServerProcess
) -> None:
    assert server.proc is not None
    for pid in (server.proc.pid, os.getpid()):
        assert probe(sandbox, "ptrace", str(pid)) == {
            "visible": False,
            "kill": "ESRCH",
            "ptrace_attach": "ESRCH",
            "ptrace_seize": "ESRCH",
        }
    status = Path(f"/proc/{server.proc.pid}/status").read_text()
    assert "TracerPid:\t0\n" in status and server.proc.poll() is None


def test_mounts_are_refused(sandbox: Sandbox, server: ServerProcess) -> None:
    before = sandbox.commands.run("cat /proc/self/mountinfo").stdout
    assert probe(sandbox, "mounts", host_disk(server.data_dir)) == {
        "proc": "EPERM",
        "tmpfs over /": "EPERM",
        "bind / elsewhere": "EPERM",
        "remount /sys writable": "EPERM",
        "block device": "EPERM",
    }
    assert sandbox.commands.run("cat /proc/self/mountinfo").stdout == before


SAFE_DEV = {
    "/dev/fd": "",
    "/dev/full": "c 1:7",
    "/dev/log": "",  # the agent's syslog socket
    "/dev/null": "c 1:3",
    "/dev/ptmx": "",
    "/dev/pts": "",
    "/dev/random": "c 1:8",
    "/dev/shm": "",
    "/dev/stderr": "",
    "/dev/stdin": "",
    "/dev/stdout": "",
    "/dev/tty": "c 5:0",
    "/dev/urandom": "c 1:9",
    "/dev/zero": "c 1:5",
}
"""What /dev holds on every backend: the harmless character devices, the terminal
multiplexer, and symlinks and directories; no block device, no memory or port device."""


def test_dev_holds_only_the_safe_set(sandbox: Sandbox, runtime: str, server: ServerProcess) -> None:
    found = probe(sandbox, "devices", host_disk(server.data_dir))
    absent = {
        f"open /dev/{name}": "ENOENT"
        for name in ("sda", "vda", "nvme0n1", "mem", "kmem", "port", "kmsg")
    }
    if runtime == "oci":
        expected = {**SAFE_DEV, "/dev/mqueue": "", **absent, "mknod": "EPERM"}
    else:
        # gVisor's /dev has its own FUSE device; a node made there is a name in gVisor's
        # tmpfs with no host device behind it: opening it finds nothing.
        expected = {
            **SAFE_DEV,
            "/dev/fuse": "c 10:229",
            **absent,
            "mknod": "ok",
            "read node": "ENXIO",
        }
    assert found == expected


def test_cgroup_release_agent_escape_fails(sandbox: Sandbox, runtime: str) -> None:
    found = probe(sandbox, "cgroups")
    common = {
        "/sys/fs/cgroup": [],  # no hierarchy mounted
        "own cgroups": ["/"],  # its own cgroup namespace: the host's tree is not named
        "mount cgroup v1": "EPERM",
        "mount cgroup2": "EPERM",
    }
    if runtime == "oci":
        assert found == {
            **common,
            "write release_agent": "ENOENT",
            "mkdir in /sys/fs/cgroup": "ENOENT",
            "new namespaces": "EPERM",
        }
    else:
        # gVisor lets root make nested namespaces and mount a cgroup hierarchy in them,
        # but its cgroupfs has no release agent to plant: nothing is ever run on release.
        assert found == {
            **common,
            "write release_agent": "EROFS",
            "mkdir in /sys/fs/cgroup": "EROFS",
            "new namespaces": "ok",
            "nested: mount cgroup v1": "ok",
            "nested: write release_agent": "EPERM",
            "nested: notify_on_release": "EPERM",
        }


def test_the_clock_cannot_be_set(sandbox: Sandbox) -> None:
    wall, mono = time.time(), time.monotonic()
    found = probe(sandbox, "clock")
    assert (found["clock_settime"], found["settimeofday"]) == ("EPERM", "EPERM")
    assert abs(found["time after"] - time.time()) < 5, "the sandbox's clock moved"
    r = sandbox.commands.run("date -s '2000-01-01 00:00:00'")
    assert r.exit_code == 1 and "cannot set date: Operation not permitted" in r.stderr
    drift = (time.time() - wall) - (time.monotonic() - mono)
    assert abs(drift) < 0.5, f"the host's clock moved by {drift:.3f} s"


def test_the_hostname_cannot_be_changed(sandbox: Sandbox, runtime: str) -> None:
    host_name = socket.gethostname()
    host_kernel_name = Path("/proc/sys/kernel/hostname").read_text()
    # runc mounts /proc/sys read-only; gVisor's kernel fails the write to its own file.
    refusal = "EROFS" if runtime == "oci" else "EIO"
    assert probe(sandbox, "hostname") == {
        "sethostname": "EPERM",
        "setdomainname": "EPERM",
        "write /proc/sys/kernel/hostname": refusal,
        "hostname after": sandbox.id,
    }
    r = sandbox.commands.run("hostname escaped")
    assert r.exit_code == 1 and "you must be root to change the host name" in r.stderr
    assert sandbox.commands.run("hostname").stdout == f"{sandbox.id}\n"
    assert socket.gethostname() == host_name
    assert Path("/proc/sys/kernel/hostname").read_text() == host_kernel_name
