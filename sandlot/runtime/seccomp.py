"""The seccomp filter every OCI sandbox runs under.

A deny list rather than Docker's allow list: the user namespace already strips host
privilege, so the filter's job is to shrink the kernel attack surface a root-in-userns
process can reach (new namespaces, kernel keyrings, BPF, module loading, clock and
swap control, perf, userfaultfd, io_uring, vsock sockets). Denied calls fail with EPERM
(or ENOSYS, EAFNOSUPPORT: "not there") so programs that probe for them (glibc trying
clone3, libuv trying io_uring) degrade instead of crashing.

io_uring is denied as Docker's default profile does since 25.0: its submission path
has been the largest source of kernel privilege escalations of recent years, and
nothing a sandbox runs needs it. AF_VSOCK would let a sandbox talk to the hypervisor's
or host's vsock services, which exist for the host alone.
"""

from __future__ import annotations

from typing import Any

ARCHITECTURES = ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64"]

DENIED_SYSCALLS = [
    "acct",
    "add_key",
    "bpf",
    "clock_adjtime",
    "clock_settime",
    "create_module",
    "delete_module",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "get_kernel_syms",
    "init_module",
    "ioperm",
    "iopl",
    "kcmp",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mount",
    "mount_setattr",
    "move_mount",
    "name_to_handle_at",
    "nfsservctl",
    "open_by_handle_at",
    "open_tree",
    "perf_event_open",
    "pivot_root",
    "process_vm_readv",
    "process_vm_writev",
    "query_module",
    "quotactl",
    "reboot",
    "request_key",
    "setns",
    "settimeofday",
    "stime",
    "swapoff",
    "swapon",
    "syslog",
    "umount",
    "umount2",
    "unshare",
    "uselib",
    "userfaultfd",
    "ustat",
    "vhangup",
    "_sysctl",
]

# clone(2) flags that create namespaces; a sandbox may fork and make threads, not nest.
CLONE_NAMESPACE_FLAGS = {
    "CLONE_NEWNS": 0x00020000,
    "CLONE_NEWCGROUP": 0x02000000,
    "CLONE_NEWUTS": 0x04000000,
    "CLONE_NEWIPC": 0x08000000,
    "CLONE_NEWUSER": 0x10000000,
    "CLONE_NEWPID": 0x20000000,
    "CLONE_NEWNET": 0x40000000,
}

IO_URING_SYSCALLS = ["io_uring_setup", "io_uring_enter", "io_uring_register"]
AF_VSOCK = 40

EPERM = 1
ENOSYS = 38
EAFNOSUPPORT = 97


def seccomp_profile() -> dict[str, Any]:
    """The OCI `linux.seccomp` object."""
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ARCHITECTURES,
        "syscalls": [
            {"names": DENIED_SYSCALLS, "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM},
            # clone3 passes flags in a struct seccomp cannot inspect: answer ENOSYS so
            # libc falls back to clone(2), whose flags are checked below.
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS},
            {"names": IO_URING_SYSCALLS, "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS},
            {
                "names": ["socket", "socketpair"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": EAFNOSUPPORT,
                "args": [{"index": 0, "value": AF_VSOCK, "op": "SCMP_CMP_EQ"}],
            },
            # One rule per flag: rules for a syscall are OR-ed, and seccomp has no
            # "masked not-equal", so "any namespace flag set" is spelled out flag by flag.
            *(
                {
                    "names": ["clone"],
                    "action": "SCMP_ACT_ERRNO",
                    "errnoRet": EPERM,
                    "args": [
                        {"index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}
                    ],
                }
                for flag in CLONE_NAMESPACE_FLAGS.values()
            ),
        ],
    }
