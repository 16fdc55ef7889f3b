"""The runsc (gVisor) backend through a real server of its own.

Sandboxes without a network get gVisor's own network stack and checkpoint through
runsc; a networked server uses the host's stack, which runsc cannot checkpoint, and must
say so instead of failing.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sandlot import Sandbox, Sandlot
from sandlot.errors import InvalidConfigError
from sandlot.runtime.runsc import runsc_version
from sandlot.testing import ServerProcess, ensure_base_template
from tests.e2e.test_lifecycle import COUNTER, count, wait_counting

if runsc_version() is None:
    print("runsc is not installed (scripts/install-runsc installs it): skipping its tests")
    pytest.skip("runsc is not installed", allow_module_level=True)


def runsc_server(
    data_dir: Path, network: bool, *, offered: list[str] | None = None
) -> ServerProcess:
    """A server whose default backend is runsc, offering the `offered` ones beside it."""
    ensure_base_template()
    data_dir.mkdir()
    env = {
        "SANDLOT_RUNTIME": "runsc",
        "SANDLOT_NETWORK_ENABLED": str(network).lower(),
        "SANDLOT_RUNTIMES": json.dumps(offered or []),
    }
    srv = ServerProcess(data_dir, extra_env=env)
    srv.start()
    return srv


@pytest.fixture(scope="module")
def gvisor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandlot]:
    """A client of a runsc server whose sandboxes have no network (and so checkpoint)."""
    srv = runsc_server(tmp_path_factory.mktemp("runsc") / "data", network=False)
    with Sandlot(api_url=srv.url, api_key=srv.api_key) as client:
        yield client
    srv.destroy_all()
    srv.stop()


@pytest.fixture
def gsbx(gvisor: Sandlot) -> Iterator[Sandbox]:
    sbx = Sandbox.create(template="base", client=gvisor)
    yield sbx
    sbx.kill()


def test_commands_and_files_run_on_gvisors_kernel(gsbx: Sandbox) -> None:
    result = gsbx.commands.run("uname -r; id -u; echo oops >&2; exit 3")
    host_release = subprocess.run(["uname", "-r"], capture_output=True, text=True).stdout
    kernel, uid = result.stdout.split()
    assert kernel != host_release.strip()  # gVisor reports a kernel of its own
    assert (uid, result.stderr, result.exit_code) == ("0", "oops\n", 3)
    gsbx.files.write("/workspace/app.py", "print(6 * 7)")
    assert gsbx.commands.run("python3 /workspace/app.py").stdout == "42\n"
    assert gsbx.commands.run("node -e 'console.log(6 * 7)'").stdout == "42\n"  # threads
    gsbx.files.write("/workspace/big.bin", b"\x00\xff" * (1 << 20))
    assert gsbx.files.read_bytes("/workspace/big.bin") == b"\x00\xff" * (1 << 20)
    assert "app.py" in {entry.name for entry in gsbx.files.list("/workspace")}


def test_background_process_streams_and_is_killed(gsbx: Sandbox) -> None:
    handle = gsbx.commands.run(
        "for i in 1 2 3; do echo line $i; sleep 0.1; done; sleep 600", background=True
    )
    seen = ""
    for chunk in handle.stream():
        seen += chunk.text
        if "line 3" in seen:
            break
    assert "line 1\nline 2\nline 3" in seen
    assert handle.id in {p.id for p in gsbx.commands.list()}
    handle.kill()
    assert handle.wait(timeout=30).signal == "SIGKILL"


def test_pause_checkpoints_and_the_counter_continues(gsbx: Sandbox) -> None:
    gsbx.commands.run(COUNTER)
    before = wait_counting(gsbx, 5)
    info = gsbx.pause()
    assert (info.status, info.pause_mode) == ("paused", "checkpoint")
    assert gsbx.usage().memory_bytes == 0  # the sandbox's processes are gone from the host
    time.sleep(1.5)
    assert gsbx.resume().status == "running"
    after = count(gsbx)
    # On from where it was, and still while paused (1.5 s running would add about 30).
    assert before <= after < before + 20, (before, after)
    assert wait_counting(gsbx, after) > after


def test_memory_snapshot_rollback_and_branch(gsbx: Sandbox, gvisor: Sandlot) -> None:
    gsbx.commands.run(COUNTER)
    gsbx.files.write("/root/state.txt", "original")
    wait_counting(gsbx, 5)
    snap = gsbx.snapshots.create("base-state")
    assert snap.has_memory
    taken = count(gsbx)
    gsbx.files.write("/root/state.txt", "changed")
    child = gsbx.branch("base-state", name="experiment")
    try:
        assert child.files.read("/root/state.txt") == "original"
        # The branch's counter goes on from the snapshot, not from zero.
        assert wait_counting(child, taken) > taken
    finally:
        child.kill()
    gsbx.rollback("base-state")
    assert gsbx.files.read("/root/state.txt") == "original"
    assert wait_counting(gsbx, taken) > taken


def test_host_kernel_interfaces_are_hidden(gsbx: Sandbox) -> None:
    """A process on the host reads kernel symbol addresses and the kernel's log; the
    same reads in the sandbox meet gVisor's kernel, which has neither."""
    host_symbols = Path("/proc/kallsyms").read_text().splitlines()[:50]
    if not any(int(line.split()[0], 16) for line in host_symbols):
        pytest.skip("this host hides kernel addresses from root too (kptr_restrict)")
    host_log = subprocess.run(["dmesg"], capture_output=True, text=True).stdout
    assert host_log.strip(), "dmesg on the host shows the kernel's log"
    inside = gsbx.commands.run(
        "head -50 /proc/kallsyms 2>&1; echo ===; dmesg 2>&1; echo ===; cat /proc/version"
    )
    symbols, log, version = inside.stdout.split("===\n")
    addresses = [line.split()[0] for line in symbols.splitlines() if len(line.split()) == 3]
    assert not any(int(a, 16) for a in addresses if _is_hex(a)), symbols
    assert "gVisor" in log and host_log.splitlines()[0] not in log
    host_version = Path("/proc/version").read_text()
    assert version.strip() != host_version.strip()


def _is_hex(text: str) -> bool:
    try:
        int(text, 16)
    except ValueError:
        return False
    return True


def test_runtimes_lists_runsc_with_checkpoints(gvisor: Sandlot) -> None:
    runtimes = {r.name: r for r in gvisor.runtimes()}
    runsc = runtimes["runsc"]
    assert runsc.default and runsc.available
    assert runsc.checkpoint and runsc.memory_snapshots and not runsc.hardware_isolation
    assert runsc.version == runsc_version()
    assert not runtimes["oci"].default


def test_networked_server_freezes_and_refuses_memory_snapshots(tmp_path: Path) -> None:
    srv = runsc_server(tmp_path / "data", network=True)
    try:
        with Sandlot(api_url=srv.url, api_key=srv.api_key) as client:
            listed = httpx.get(f"{srv.url}/v1/runtimes", headers={"X-API-Key": srv.api_key})
            runsc = next(r for r in listed.json()["data"] if r["name"] == "runsc")
            assert runsc["checkpoint"] is False and "network" in runsc["checkpointProblem"]
            with Sandbox.create(template="base", client=client) as sbx:
                resolver = sbx.commands.run("cat /etc/resolv.conf").stdout
                assert "nameserver 10." in resolver  # the sandbox has Sandlot's network
                sbx.commands.run(COUNTER)
                before = wait_counting(sbx, 5)
                assert sbx.pause().pause_mode == "freeze"
                time.sleep(1)
                sbx.resume()
                assert before <= count(sbx) < before + 15
                with pytest.raises(InvalidConfigError, match="host's network stack"):
                    sbx.snapshots.create("with-memory", memory=True)
                snap = sbx.snapshots.create("files-only")
                assert not snap.has_memory
    finally:
        srv.destroy_all()
        srv.stop()


def test_paused_sandbox_outlives_a_server_restart(tmp_path: Path) -> None:
    srv = runsc_server(tmp_path / "data", network=False)
    try:
        with Sandlot(api_url=srv.url, api_key=srv.api_key) as client:
            sbx = Sandbox.create(template="base", client=client)
            sbx.commands.run(COUNTER)
            before = wait_counting(sbx, 5)
            assert sbx.pause().pause_mode == "checkpoint"
        srv.stop()
        srv.start()
        with Sandlot(api_url=srv.url, api_key=srv.api_key) as client:
            again = Sandbox.get(sbx.id, client=client)
            assert again.info.status == "paused"
            assert again.resume().status == "running"
            assert before <= count(again) < before + 20
            assert wait_counting(again, before) > before
    finally:
        srv.destroy_all()
        srv.stop()


def test_a_template_builds_on_gvisor(gvisor: Sandlot, tmp_path: Path) -> None:
    """A RUN step runs under gVisor; what it writes reaches the host's layer (the step
    syncs before its layer is copied), deletions included."""
    name = f"gvisor-built-{secrets.token_hex(4)}"
    text = "FROM base\nRUN echo from-gvisor > /made && rm /etc/issue\n"
    build = gvisor.templates.build(name, text, tmp_path)
    try:
        assert build.status == "ready"
        with Sandbox.create(template=name, client=gvisor) as sbx:
            assert sbx.info.runtime == "runsc"
            seen = sbx.commands.run("cat /made; ls /etc/issue")
            assert seen.stdout == "from-gvisor\n"
            assert "cannot access '/etc/issue'" in seen.stderr
    finally:
        gvisor.templates.delete(name, force=True)
