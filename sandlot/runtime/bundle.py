"""The OCI runtime `config.json` for a sandbox.

Every isolation decision for container sandboxes is made here, in one readable place:
all namespaces including the user namespace (root inside maps to an unprivileged
host uid), a Docker-like capability set minus NET_RAW and MKNOD, no-new-privileges,
the seccomp filter, masked /proc entries, a minimal /dev, and cgroup limits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sandlot.domain.host_values import SandboxSpec
from sandlot.domain.resources import Resources
from sandlot.runtime.seccomp import seccomp_profile

# Container ids 0..65535 map to host ids starting here. Templates are stored shifted
# into this range (see templates/ownership.py), so every sandbox shares one mapping.
USERNS_HOST_BASE = 100000
USERNS_SIZE = 65536

AGENT_MOUNT = "/.sandlot/agent"
RUN_MOUNT = "/.sandlot/run"
AGENT_PYTHON = "/.sandlot/python"
SYSLOG_SOCKET = "/dev/log"
AGENT_SOCKET = f"{RUN_MOUNT}/agent.sock"

CAPABILITIES = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
]

MASKED_PATHS = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
]

READONLY_PATHS = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
]

CPU_PERIOD_US = 100_000
MEMORY_MB_CAP = 16 * 1024
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def agent_args(workdir: str) -> list[str]:
    """The stdlib-only agent, run by the Python of the agent layer (templates/agent_layer.py)
    through that layer's own loader, so it needs nothing from the template and leaves no
    library path behind for the commands it starts; it also serves the syslog socket."""
    python = [f"{AGENT_PYTHON}/lib/ld.so", "--library-path", f"{AGENT_PYTHON}/lib"]
    python += [f"{AGENT_PYTHON}/bin/python3", "-E", "-s", "-S", "-B"]
    agent = ["-m", "agent", "--socket", AGENT_SOCKET, "--syslog", SYSLOG_SOCKET]
    return [*python, *agent, "--workdir", workdir]


def cgroup_resources(res: Resources, cpus: str | None) -> dict[str, Any]:
    """The OCI `linux.resources` for these limits (also what `runc update` takes)."""
    memory = res.memory_mb * 1024 * 1024
    cpu: dict[str, Any] = {"quota": res.vcpus * CPU_PERIOD_US, "period": CPU_PERIOD_US}
    if cpus is not None:
        cpu["cpus"] = cpus
    return {
        "memory": {"limit": memory, "swap": memory},
        "cpu": cpu,
        "pids": {"limit": res.pids},
    }


def identity_files(sandbox_id: str, nameserver: str | None = None) -> dict[str, str]:
    """/etc files that must name the sandbox (and its resolver), not the host the
    template was built on."""
    files = {
        "hostname": f"{sandbox_id}\n",
        "hosts": (
            "127.0.0.1\tlocalhost\n"
            f"127.0.1.1\t{sandbox_id}\n"
            "::1\tlocalhost ip6-localhost ip6-loopback\n"
        ),
    }
    if nameserver is not None:
        files["resolv.conf"] = f"nameserver {nameserver}\n"
    return files


def oci_config(
    spec: SandboxSpec,
    *,
    agent_dir: Path,
    run_dir: Path,
    etc_dir: Path,
    cgroup: str,
    user_namespace: Path | None = None,
) -> dict[str, Any]:
    """`etc_dir` holds the files of `identity_files`, bind-mounted over the template's;
    `cgroup` is the sandbox's cgroup path. `user_namespace` names one made for the
    sandbox (see `userns.py`) for runc to join; without it runc makes one."""
    res = spec.resources
    env = {"PATH": PATH, "HOME": "/root", "HOSTNAME": spec.sandbox_id, "TERM": "xterm-256color"}
    env.update(spec.env)
    caps = {kind: CAPABILITIES for kind in ("bounding", "effective", "permitted")}
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": agent_args(spec.workdir),
            "env": [f"{k}={v}" for k, v in env.items()],
            "cwd": "/.sandlot",
            "capabilities": caps,
            "noNewPrivileges": True,
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 16384, "soft": 16384}],
        },
        "root": {"path": "rootfs", "readonly": False},
        "hostname": spec.sandbox_id,
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {
                "destination": "/dev",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
            },
            {
                "destination": "/dev/pts",
                "type": "devpts",
                "source": "devpts",
                "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"],
            },
            {
                "destination": "/dev/shm",
                "type": "tmpfs",
                "source": "shm",
                "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
            },
            {
                "destination": "/dev/mqueue",
                "type": "mqueue",
                "source": "mqueue",
                "options": ["nosuid", "noexec", "nodev"],
            },
            {
                "destination": "/sys",
                "type": "sysfs",
                "source": "sysfs",
                "options": ["nosuid", "noexec", "nodev", "ro"],
            },
            {
                "destination": "/tmp",
                "type": "tmpfs",
                "source": "tmpfs",
                # The memory cgroup bounds what tmpfs pages may use; the size is only a cap.
                "options": ["nosuid", "nodev", "mode=1777", f"size={MEMORY_MB_CAP}m"],
            },
            *(
                {
                    "destination": f"/etc/{name}",
                    "type": "bind",
                    "source": str(etc_dir / name),
                    "options": ["rbind", "rw", "nosuid", "nodev", "noexec"],
                }
                for name in identity_files(spec.sandbox_id, spec.nameserver)
            ),
            {
                "destination": AGENT_MOUNT,
                "type": "bind",
                "source": str(agent_dir),
                "options": ["rbind", "ro", "nosuid", "nodev"],
            },
            {
                "destination": RUN_MOUNT,
                "type": "bind",
                "source": str(run_dir),
                "options": ["rbind", "rw", "nosuid", "nodev", "noexec"],
            },
            *(
                {
                    "destination": m.path,
                    "type": "bind",
                    "source": m.source,
                    "options": ["rbind", "ro" if m.read_only else "rw", "nosuid", "nodev"],
                }
                for m in spec.mounts
            ),
        ],
        "linux": {
            "uidMappings": [{"containerID": 0, "hostID": USERNS_HOST_BASE, "size": USERNS_SIZE}],
            "gidMappings": [{"containerID": 0, "hostID": USERNS_HOST_BASE, "size": USERNS_SIZE}],
            "namespaces": [
                {"type": ns} for ns in ("pid", "network", "ipc", "uts", "mount", "cgroup")
            ]
            + [
                {"type": "user"}
                if user_namespace is None
                else {"type": "user", "path": str(user_namespace)}
            ],
            "cgroupsPath": cgroup,
            "resources": {
                "devices": [{"allow": False, "access": "rwm"}],
                **cgroup_resources(res, spec.cpus),
            },
            "seccomp": seccomp_profile(),
            "maskedPaths": MASKED_PATHS,
            "readonlyPaths": READONLY_PATHS,
        },
    }
