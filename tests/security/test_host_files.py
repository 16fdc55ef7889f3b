"""The host's files, sought from inside through every path that might lead out: /proc's
root and cwd links, `..` past the root, symlinks and hard links, in the shell and through
the file API. A marker file made on the host for each test is never readable, and
nothing written along those paths reaches the host.

The marker lives in /var/tmp, a directory every sandbox has too: a miss there is the
sandbox's own directory answering, not a path that exists nowhere.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from sandlot import Sandbox
from sandlot.errors import FileNotFoundInSandboxError, FileOperationError
from tests.security.probes import probe

HOST_FILES = (Path("/etc/passwd"), Path("/etc/shadow"), Path("/etc/hostname"))


def routes_out(path: Path) -> list[str]:
    """Spellings of a host path that try to climb out of the sandbox's root."""
    return [
        str(path),
        f"/proc/1/root{path}",
        f"/proc/self/root/../..{path}",
        f"/proc/self/cwd/../../../..{path}",
        f"/proc/1/cwd/../../../..{path}",
        f"/.sandlot/run/../../../..{path}",  # a directory bind-mounted from the host
    ]


def digests() -> dict[Path, str]:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in HOST_FILES if p.exists()}


def test_the_host_marker_is_unreadable_through_proc_and_dotdot(
    sandbox: Sandbox, host_marker: Path, runtime: str
) -> None:
    found = probe(sandbox, "read_paths", *routes_out(host_marker))
    assert sandbox.commands.run(f"test -d {host_marker.parent}").exit_code == 0
    # PID 1 is the sandbox's agent, which is not dumpable: its root and cwd links are
    # closed to every other process of the sandbox (gVisor keeps them from everyone but
    # a tracer in any case).
    via_pid1 = "EACCES"
    expected = dict.fromkeys(routes_out(host_marker), "ENOENT")
    expected[f"/proc/1/root{host_marker}"] = via_pid1
    expected[f"/proc/1/cwd/../../../..{host_marker}"] = via_pid1
    assert found == expected
    secret = host_marker.read_text()
    r = sandbox.commands.run(f"grep -rsF '{secret.strip()}' /etc /var /tmp /root /workspace")
    assert r.exit_code == 1 and r.stdout == ""


def test_symlinks_lead_to_the_sandboxs_own_root(
    sandbox: Sandbox, host_marker: Path, runtime: str
) -> None:
    links = {"/workspace/root": "/", "/workspace/pid1": "/proc/1/root"}
    links.update({"/workspace/up": "/proc/self/root/../..", "/workspace/marker": str(host_marker)})
    sandbox.commands.run("; ".join(f"ln -s {target} {link}" for link, target in links.items()))
    for link in links:
        through = link if link == "/workspace/marker" else f"{link}{host_marker}"
        # Read by the agent, PID 1 itself, the file API may follow its own root link.
        with pytest.raises(FileNotFoundInSandboxError):
            sandbox.files.read(through)
        r = sandbox.commands.run(f"cat {through}")
        denied = link == "/workspace/pid1"  # as in the test above
        reason = "Permission denied" if denied else "No such file or directory"
        assert (r.exit_code, r.stderr) == (1, f"cat: {through}: {reason}\n")
    # What they do reach is the sandbox's own root.
    assert sandbox.files.read("/workspace/root/etc/hostname") == f"{sandbox.id}\n"
    assert sandbox.files.read("/workspace/up/etc/hostname") == f"{sandbox.id}\n"


def test_file_api_paths_climb_no_higher_than_the_sandboxs_root(
    sandbox: Sandbox, host_marker: Path
) -> None:
    for path in (str(host_marker), f"../../..{host_marker}", f"/../../..{host_marker}"):
        with pytest.raises(FileNotFoundInSandboxError):
            sandbox.files.read(path)
    own_root = {e.name for e in sandbox.files.list("/")}
    assert {e.name for e in sandbox.files.list("/../../..")} == own_root
    assert {e.name for e in sandbox.files.list("../..")} == own_root
    assert ".sandlot" in own_root and "workspace" in own_root
    # The sandbox's own shadow file, not the host's.
    inside = sandbox.commands.run("cat /etc/shadow").stdout
    assert sandbox.files.read("../../etc/shadow") == inside


def test_writes_along_escape_paths_land_inside(sandbox: Sandbox, host_marker: Path) -> None:
    before, secret = digests(), host_marker.read_text()
    sandbox.commands.run(f"ln -s {host_marker} /workspace/marker")
    sandbox.files.write(f"../../..{host_marker}", "written by the sandbox\n")
    sandbox.files.write("/workspace/marker", "written by the sandbox\n")
    sandbox.files.write("../../../etc/passwd", "written by the sandbox\n")
    sandbox.commands.run(
        "echo written > /proc/1/root/../../etc/shadow; "
        "echo written > /proc/self/root/../../etc/hostname-escape; "
        f"echo written > /proc/self/cwd/../../../..{host_marker}"
    )
    assert host_marker.read_text() == secret and digests() == before
    assert not Path("/etc/hostname-escape").exists()
    # Each write went to the sandbox's own file of that name.
    assert sandbox.files.read(str(host_marker)) == "written\n"
    assert sandbox.files.read("/etc/passwd") == "written by the sandbox\n"
    # Removing along the same paths removes the sandbox's copy, never the host's file.
    sandbox.files.remove(f"../../..{host_marker}")
    assert host_marker.read_text() == secret
    with pytest.raises(FileOperationError, match="device or resource busy"):
        sandbox.files.remove("../../etc/hostname")  # a bind mount the host provides


def test_hard_links_to_outside_files_fail(
    sandbox: Sandbox, host_marker: Path, runtime: str
) -> None:
    agent_file = next(e.path for e in sandbox.files.list("/.sandlot/agent") if e.type == "file")
    r = sandbox.commands.run(
        "python3 -c '"
        "import errno, os, sys\n"
        "for i, source in enumerate(sys.argv[1:]):\n"
        "    try:\n"
        '        os.link(source, f"/workspace/hard{i}")\n'
        '        print("linked")\n'
        "    except OSError as e:\n"
        "        print(errno.errorcode[e.errno])\n"
        f"' /etc/hostname {agent_file} /proc/1/root/../../etc/resolv.conf {host_marker}"
    )
    # The files the host bind-mounts in (its hostname file, the agent) are on other
    # mounts: no link crosses them. The marker is nowhere to link from, and the agent's
    # /proc/1/root is closed to other processes (it is not dumpable).
    assert r.stdout.split() == ["EXDEV", "EXDEV", "EACCES", "ENOENT"]


def test_what_the_bind_mounts_take_is_a_small_tmpfs_not_host_disk(
    sandbox: Sandbox, runtime: str
) -> None:
    """/etc/hosts, /etc/resolv.conf, /etc/hostname and /.sandlot/run come from the host;
    writing through them fills a 1 MiB tmpfs of the sandbox's own, then ENOSPC."""
    script = (
        "import errno\n"
        "written = 0\n"
        "for path in ('/etc/hosts', '/etc/resolv.conf', '/etc/hostname', '/.sandlot/run/fill'):\n"
        "    try:\n"
        "        with open(path, 'ab') as f:\n"
        "            for _ in range(64):\n"
        "                f.write(b'x' * 65536); f.flush(); written += 65536\n"
        "    except OSError as exc:\n"
        "        assert exc.errno == errno.ENOSPC, exc\n"
        "print(written)\n"
    )
    r = sandbox.commands.run(["python3", "-c", script], timeout=60)
    assert r.exit_code == 0, r.stderr
    assert int(r.stdout) <= 1024 * 1024
    # The sandbox still answers: its agent's socket lives on the same full tmpfs.
    assert sandbox.commands.run("echo ok").stdout == "ok\n"
