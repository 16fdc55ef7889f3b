"""Per-user kernel allowances one sandbox spends are not another's, nor the host's.

The kernel counts inotify instances, message-queue bytes and the like per uid in a user
namespace and again for the namespace's owner in the parent. A sandbox opening
thousands of inotify instances (every `inotify_init` a default host would have refused
after 128, for everyone) leaves a sandbox of another organisation, and host root, able
to open theirs. Message-queue bytes are per sandbox where each sandbox's user namespace
has an owner of its own (`user_namespace_owners`, on a host that lets root keep
CAP_SYS_RESOURCE; see `sandlot/runtime/userns.py`): that test runs a server of its own
with the setting on, and is skipped with the reason where the host withholds the
capability.
"""

from __future__ import annotations

import ctypes
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandlot import Sandbox, Sandlot
from sandlot.runtime.userns import has_sys_resource
from sandlot.testing import ServerProcess
from tests.security.probes import other_org_key

HOLD_INOTIFY = """
import ctypes, sys, time
libc = ctypes.CDLL(None, use_errno=True)
held = []
while len(held) < int(sys.argv[1]):
    fd = libc.inotify_init()
    if fd < 0:
        break
    held.append(fd)
open('/tmp/held', 'w').write(str(len(held)))
time.sleep(120)
"""

INOTIFY_ONCE = (
    "python3 -c 'import ctypes; l = ctypes.CDLL(None, use_errno=True); "
    "fd = l.inotify_init(); print(fd, ctypes.get_errno())'"
)

FILL_QUEUES = """
import ctypes, os, sys, time
rt = ctypes.CDLL("librt.so.1", use_errno=True)
class Attr(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_long), ("maxmsg", ctypes.c_long),
                ("msgsize", ctypes.c_long), ("curmsgs", ctypes.c_long), ("pad", ctypes.c_long * 4)]
rt.mq_open.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_int, ctypes.POINTER(Attr)]
attr = Attr(0, 10, 8192, 0)
opened, err = 0, 0
for i in range(int(sys.argv[1])):
    if rt.mq_open(f"/{sys.argv[2]}{i}".encode(), os.O_CREAT | os.O_RDWR, 0o600, attr) < 0:
        err = ctypes.get_errno()
        break
    opened += 1
print(opened, err)
"""


def host_inotify_init() -> tuple[int, int]:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init()
    errno = ctypes.get_errno()
    if fd >= 0:
        os.close(fd)
    return fd, errno


def test_inotify_instances_of_one_sandbox_leave_others_and_the_host_theirs(
    client: Sandlot, bystander: Sandbox
) -> None:
    with Sandbox.create(client=client) as greedy:
        greedy.files.write("/tmp/hold.py", HOLD_INOTIFY)
        holder = greedy.commands.run("python3 /tmp/hold.py 4000", background=True)
        try:
            held = 0
            for _ in range(100):
                probe = greedy.commands.run("cat /tmp/held 2>/dev/null || true")
                if probe.stdout.strip():
                    held = int(probe.stdout)
                    break
                time.sleep(0.1)
            fd, errno = bystander.commands.run(INOTIFY_ONCE).stdout.split()
            host_fd, host_errno = host_inotify_init()
        finally:
            holder.kill()
    assert held == 4000, f"the sandbox got only {held} inotify instances"
    assert int(fd) >= 0, f"a bystander sandbox's inotify_init failed with errno {errno}"
    assert host_fd >= 0, f"host root's inotify_init failed with errno {host_errno}"


@pytest.fixture
def owners_server(tmp_path: Path) -> Iterator[ServerProcess]:
    if not has_sys_resource():
        print("root here lacks CAP_SYS_RESOURCE: sandboxes' user namespaces are runc's")
        pytest.skip("message-queue bytes are shared where namespaces are root's")
    srv = ServerProcess(
        tmp_path / "data",
        extra_env={"SANDLOT_USER_NAMESPACE_OWNERS": "true", "SANDLOT_WARM_POOL_SIZE": "0"},
    )
    srv.data_dir.mkdir()
    srv.start()
    yield srv
    srv.destroy_all()
    srv.stop()


def test_message_queue_bytes_of_one_sandbox_leave_another_its_own(
    owners_server: ServerProcess,
) -> None:
    with Sandlot(owners_server.url, owners_server.api_key) as admin:
        key = other_org_key(admin)
    with (
        Sandlot(owners_server.url, owners_server.api_key) as client,
        Sandlot(owners_server.url, key) as other,
        Sandbox.create(client=client) as greedy,
        Sandbox.create(client=other) as bystander,
    ):
        greedy.files.write("/tmp/fill.py", FILL_QUEUES)
        opened, errno = greedy.commands.run("python3 /tmp/fill.py 1000 q").stdout.split()
        bystander.files.write("/tmp/fill.py", FILL_QUEUES)
        theirs, their_errno = bystander.commands.run("python3 /tmp/fill.py 1 b").stdout.split()
    assert int(errno) != 0 and int(opened) < 1000, "the sandbox's queues were not bounded"
    assert int(theirs) == 1, f"a bystander's mq_open failed with errno {their_errno}"
