"""Escape attempts run inside a sandbox: `python3 inside.py CHECK [ARG...]`.

Standard library only (the sandbox's own python3 runs it). Each check makes its
attempts through the system calls themselves (via ctypes where Python has no wrapper),
so the tests see the exact errno of each refusal rather than a tool's exit status, and
prints one JSON object: attempt -> "ok" or the errno's name ("EPERM"), or the value read.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import json
import os
import socket
import stat
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long

# x86_64 system call numbers of calls glibc has no wrapper for.
SYS_INIT_MODULE = 175
SYS_DELETE_MODULE = 176
SYS_FINIT_MODULE = 313
SYS_IO_URING_SETUP = 425  # the same number on every architecture
SYS_IO_URING_ENTER = 426
SYS_IO_URING_REGISTER = 427
AF_VSOCK = 40
SYS_PIDFD_GETFD = 438
SYS_PROCESS_VM_READV = 310 if os.uname().machine == "x86_64" else 270
CLOCK_REALTIME = 0
PTRACE_ATTACH = 16
PTRACE_SEIZE = 0x4206
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUSER = 0x10000000
MS_BIND, MS_REC, MS_REMOUNT = 4096, 16384, 32
Y2K = 946684800


class Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


Result = str | int | float | bool | list[str] | None


def attempt(call: Callable[[], Result]) -> Result:
    """What a Python call gave: its value ("ok" for None) or its errno's name."""
    try:
        value = call()
    except OSError as exc:
        return errno.errorcode.get(exc.errno or 0, str(exc))
    return "ok" if value is None else value


def libc_call(name: str, *args: object) -> str:
    """A libc call returning -1 and errno on failure: "ok" or the errno's name."""
    ctypes.set_errno(0)
    if getattr(libc, name)(*args) == -1:
        return errno.errorcode[ctypes.get_errno()]
    return "ok"


def syscall(number: int, *args: object) -> str:
    return libc_call("syscall", number, *args)


def modules() -> dict[str, Result]:
    fd = os.open("/bin/true", os.O_RDONLY)  # any file: the call must fail before reading it
    return {
        "init_module": syscall(SYS_INIT_MODULE, None, 0, b""),
        "finit_module": syscall(SYS_FINIT_MODULE, fd, b"", 0),
        "delete_module": syscall(SYS_DELETE_MODULE, b"ext4", 0),
    }


def raw_sockets() -> dict[str, Result]:
    """As the sandbox's root, then again as root of a user namespace of its own where
    the kernel allows one (with every capability there)."""
    kinds = {
        "AF_INET/SOCK_RAW": (socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP),
        "AF_INET6/SOCK_RAW": (socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6),
        "AF_PACKET/SOCK_RAW": (socket.AF_PACKET, socket.SOCK_RAW, 0),
        "AF_PACKET/SOCK_DGRAM": (socket.AF_PACKET, socket.SOCK_DGRAM, 0),
    }

    def each(prefix: str = "") -> dict[str, Result]:
        return {
            prefix + name: attempt(functools.partial(_open_socket, *k)) for name, k in kinds.items()
        }

    found = each()
    found["new user namespace"] = libc_call("unshare", CLONE_NEWUSER)
    if found["new user namespace"] == "ok":
        found.update(each("nested: "))
    return found


def host_only_channels() -> dict[str, Result]:
    """io_uring (three calls; the first is enough to refuse) and vsock sockets."""
    params = ctypes.create_string_buffer(120)  # struct io_uring_params
    return {
        "io_uring_setup": syscall(SYS_IO_URING_SETUP, 8, params),
        "io_uring_enter": syscall(SYS_IO_URING_ENTER, 0, 0, 0, 0, None, 0),
        "io_uring_register": syscall(SYS_IO_URING_REGISTER, 0, 0, None, 0),
        "AF_VSOCK/SOCK_STREAM": attempt(functools.partial(_open_socket, AF_VSOCK, 1, 0)),
        "AF_VSOCK/SOCK_DGRAM": attempt(functools.partial(_open_socket, AF_VSOCK, 2, 0)),
    }


def ptrace(pid_text: str) -> dict[str, Result]:
    """A process of the host, by its host pid."""
    pid = int(pid_text)
    return {
        "visible": os.path.exists(f"/proc/{pid}"),
        "kill": attempt(lambda: os.kill(pid, 0)),
        "ptrace_attach": libc_call("ptrace", PTRACE_ATTACH, pid, None, None),
        "ptrace_seize": libc_call("ptrace", PTRACE_SEIZE, pid, None, None),
    }


def take_the_agent() -> dict[str, Result]:
    """What root inside would need to speak to the host as the agent (PID 1): trace it,
    or copy its connection's descriptor out of it."""
    try:
        pidfd = os.pidfd_open(1)
    except OSError as exc:  # gVisor has no pidfd_open
        taken: dict[str, Result] = {"pidfd_open": errno.errorcode[exc.errno or 0]}
    else:
        taken = {f"pidfd_getfd {fd}": syscall(SYS_PIDFD_GETFD, pidfd, fd, 0) for fd in range(3, 9)}
    return {
        "ptrace_attach": libc_call("ptrace", PTRACE_ATTACH, 1, None, None),
        "ptrace_seize": libc_call("ptrace", PTRACE_SEIZE, 1, None, None),
        "process_vm_readv": syscall(SYS_PROCESS_VM_READV, 1, None, 0, None, 0, 0),
        "fd link": attempt(lambda: os.readlink("/proc/1/fd/0")),
        **taken,
    }


def mounts(major_minor: str) -> dict[str, Result]:
    """Mounts over the sandbox's root, of the kernel's filesystems, and of a node made
    for the host's disk (MAJOR:MINOR), where the kernel lets one be made."""
    os.makedirs("/tmp/target", exist_ok=True)
    _disk_node(major_minor)

    def mount(source: bytes, target: bytes, fs: bytes | None, flags: int = 0) -> str:
        return libc_call("mount", source, target, fs, ctypes.c_ulong(flags), None)

    return {
        "proc": mount(b"proc", b"/tmp/target", b"proc"),
        "tmpfs over /": mount(b"none", b"/", b"tmpfs"),
        "bind / elsewhere": mount(b"/", b"/tmp/target", None, MS_BIND | MS_REC),
        "remount /sys writable": mount(b"sysfs", b"/sys", None, MS_REMOUNT),
        "block device": mount(DISK_NODE.encode(), b"/tmp/target", b"ext4"),
    }


DISK_NODE = "/tmp/disk"


def _disk_node(major_minor: str) -> Result:
    major, minor = (int(n) for n in major_minor.split(":"))
    return attempt(lambda: os.mknod(DISK_NODE, 0o600 | stat.S_IFBLK, os.makedev(major, minor)))


def devices(major_minor: str) -> dict[str, Result]:
    """/dev as the sandbox sees it ("c 1:3" for a character device), and a node made for
    the host's disk (MAJOR:MINOR)."""
    found: dict[str, Result] = {}
    for name in sorted(os.listdir("/dev")):
        st = os.lstat(f"/dev/{name}")
        kind = "c" if stat.S_ISCHR(st.st_mode) else "b" if stat.S_ISBLK(st.st_mode) else ""
        rdev = f" {os.major(st.st_rdev)}:{os.minor(st.st_rdev)}" if kind else ""
        found[f"/dev/{name}"] = kind + rdev
    for absent in ("sda", "vda", "nvme0n1", "mem", "kmem", "port", "kmsg"):
        found[f"open /dev/{absent}"] = attempt(functools.partial(_first_bytes, f"/dev/{absent}"))
    found["mknod"] = _disk_node(major_minor)
    if os.path.exists(DISK_NODE):
        found["read node"] = attempt(lambda: _first_bytes(DISK_NODE))
    return found


def _first_bytes(path: str) -> int:
    fd = os.open(path, os.O_RDONLY)
    try:
        return len(os.pread(fd, 512, 0))
    finally:
        os.close(fd)


def cgroups() -> dict[str, Result]:
    """The cgroup v1 release_agent escape, step by step."""
    os.makedirs("/tmp/cgroup", exist_ok=True)
    found: dict[str, Result] = {
        "/sys/fs/cgroup": attempt(lambda: sorted(os.listdir("/sys/fs/cgroup"))),
        "own cgroups": sorted(
            {line.split(":", 2)[2] for line in _read("/proc/self/cgroup").splitlines()}
        ),
        "mount cgroup v1": libc_call(
            "mount", b"cgroup", b"/tmp/cgroup", b"cgroup", ctypes.c_ulong(0), b"memory"
        ),
        "mount cgroup2": libc_call(
            "mount", b"cgroup2", b"/tmp/cgroup", b"cgroup2", ctypes.c_ulong(0), None
        ),
        "write release_agent": attempt(
            lambda: _write("/sys/fs/cgroup/release_agent", "/tmp/escape.sh")
        ),
        "mkdir in /sys/fs/cgroup": attempt(lambda: os.mkdir("/sys/fs/cgroup/escape")),
    }
    uid, gid = os.getuid(), os.getgid()
    found["new namespaces"] = libc_call("unshare", CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWCGROUP)
    if found["new namespaces"] == "ok":
        # A kernel that allows nested namespaces (gVisor's own): as root of the new one,
        # mount a cgroup v1 hierarchy and try to plant a release agent in it.
        _map_root(uid, gid)
        found["nested: mount cgroup v1"] = libc_call(
            "mount", b"cgroup", b"/tmp/cgroup", b"cgroup", ctypes.c_ulong(0), b"memory"
        )
        found["nested: write release_agent"] = attempt(
            lambda: _write("/tmp/cgroup/release_agent", "/tmp/escape.sh")
        )
        found["nested: notify_on_release"] = attempt(
            lambda: _write("/tmp/cgroup/notify_on_release", "1")
        )
    return found


def clock() -> dict[str, Result]:
    when = Timespec(Y2K, 0)
    return {
        "clock_settime": libc_call("clock_settime", CLOCK_REALTIME, ctypes.byref(when)),
        "settimeofday": libc_call("settimeofday", ctypes.byref(when), None),
        "time after": time.time(),
    }


def hostname() -> dict[str, Result]:
    return {
        "sethostname": libc_call("sethostname", b"escaped", 7),
        "setdomainname": libc_call("setdomainname", b"escaped", 7),
        "write /proc/sys/kernel/hostname": attempt(
            lambda: _write("/proc/sys/kernel/hostname", "escaped")
        ),
        "hostname after": os.uname().nodename,
    }


def connect(*addresses: str) -> dict[str, Result]:
    """A TCP connection to each HOST:PORT, all at once, each given 1.5 s."""

    def one(address: str) -> Result:
        host, port = address.rsplit(":", 1)
        with socket.socket() as s:
            s.settimeout(1.5)
            try:
                s.connect((host, int(port)))
            except TimeoutError:
                return "timeout"
            except OSError as exc:
                return errno.errorcode.get(exc.errno or 0, str(exc))
            return "connected"

    with ThreadPoolExecutor(len(addresses)) as pool:
        return dict(zip(addresses, pool.map(one, addresses), strict=True))


def read_paths(*paths: str) -> dict[str, Result]:
    return {path: attempt(functools.partial(_read, path)) for path in paths}


def _open_socket(family: int, kind: int, protocol: int) -> None:
    socket.socket(family, kind, protocol).close()


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _map_root(uid: int, gid: int) -> None:
    with contextlib.suppress(OSError):  # gVisor keeps it; root of the parent may map gids
        _write("/proc/self/setgroups", "deny")
    _write("/proc/self/uid_map", f"0 {uid} 1")
    _write("/proc/self/gid_map", f"0 {gid} 1")


CHECKS: dict[str, Callable[..., dict[str, Result]]] = {
    "modules": modules,
    "raw_sockets": raw_sockets,
    "host_only_channels": host_only_channels,
    "ptrace": ptrace,
    "take_the_agent": take_the_agent,
    "mounts": mounts,
    "devices": devices,
    "cgroups": cgroups,
    "clock": clock,
    "hostname": hostname,
    "connect": connect,
    "read_paths": read_paths,
}

if __name__ == "__main__":
    print(json.dumps(CHECKS[sys.argv[1]](*sys.argv[2:])))
