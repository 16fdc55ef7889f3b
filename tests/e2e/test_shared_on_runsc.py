"""The shared command, process and lifecycle tests again, on gVisor.

The test functions are those of the other modules, collected here a second time with
this module's fixtures: a server of its own whose default backend is runsc (with its
network on, as most deployments run it) and which offers oci beside it. The few
behaviours gVisor changes by design are asserted here as what they are, by checking the
backend's capabilities or gVisor's own answers, not skipped. The isolation tests run
on both backends in tests/security/.
"""

from __future__ import annotations

import ctypes
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sandlot import AsyncSandbox, AsyncSandlot, Sandbox, Sandlot
from sandlot.errors import InvalidConfigError
from sandlot.runtime.reaping import PR_SET_CHILD_SUBREAPER
from sandlot.runtime.runsc import runsc_version
from sandlot.testing import ServerProcess, ensure_base_template
from tests.e2e.test_cleanup_and_restart import doctor_check, host_traces
from tests.e2e.test_commands import (  # noqa: F401  (collected again, on runsc)
    test_cwd_and_env,
    test_default_cwd_and_hostname,
    test_large_output,
    test_nul_byte_is_a_clear_400,
    test_signal_reported,
    test_stdout_stderr_exit_code,
    test_timeout_kills_group_and_returns_output_so_far,
    test_tools_of_the_base_template,
)
from tests.e2e.test_lifecycle import (  # noqa: F401
    COUNTER,
    test_branch_diverges_from_its_parent,
    test_calls_on_a_paused_sandbox_resume_it,
    test_counter_continues_across_pause_and_resume,
    test_create_from_snapshot_and_snapshot_management,
    test_files_and_a_listening_server_survive_resume,
    test_limits_given_at_create_survive_pause_and_resume,
    test_resume_by_id,
    test_rollback_restores_files_and_processes,
    test_snapshot_patches_make_revisions_and_can_be_removed,
    test_ten_branches_of_one_snapshot_in_parallel,
    wait_counting,
)
from tests.e2e.test_processes import (  # noqa: F401
    test_async_handles,
    test_background_stream_and_wait,
    test_binary_output_survives,
    test_default_kill_is_sigkill,
    test_kill_with_each_signal,
    test_line_callbacks_while_waiting,
    test_list_and_reattach_from_a_second_client,
    test_pty_like_a_person,
    test_stdin_and_eof,
    test_timeout_streamed_run,
    test_unknown_process,
)
from tests.e2e.test_runsc import runsc_server
from tests.e2e.test_volumes import (  # noqa: F401
    test_a_file_keeps_its_owner_from_one_sandbox_to_the_next,
    test_files_without_a_sandbox_and_through_one,
    test_pause_resume_and_branch_keep_the_mounts,
    test_the_reference_body_works_verbatim_and_files_outlive_the_sandbox,
    test_two_sandboxes_mounting_one_volume_see_each_others_writes_at_once,
)

PR_GET_CHILD_SUBREAPER = 37

if runsc_version() is None:
    print("runsc is not installed (scripts/install-runsc installs it): skipping its tests")
    pytest.skip("runsc is not installed", allow_module_level=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = runsc_server(tmp_path_factory.mktemp("gvisor-shared") / "data", True, offered=["oci"])
    yield srv
    srv.destroy_all()
    srv.stop()


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[Sandlot]:
    with Sandlot(api_url=server.url, api_key=server.api_key) as c:
        yield c


@pytest.fixture
def sandbox(client: Sandlot) -> Iterator[Sandbox]:
    sbx = Sandbox.create(template="base", client=client)
    assert sbx.info.runtime == "runsc"
    yield sbx
    sbx.kill()


@pytest.fixture(scope="module")
def checkpoints(client: Sandlot) -> bool:
    """What the runsc backend says it can do here, rather than what a pause shows."""
    return next(r for r in client.runtimes() if r.name == "runsc").checkpoint


def test_each_sandbox_runs_on_the_backend_it_asked_for(client: Sandlot) -> None:
    listed = {r.name: r for r in client.runtimes()}
    assert listed["runsc"].default and listed["runsc"].offered
    assert listed["oci"].offered and not listed["oci"].default
    host_release = subprocess.run(["uname", "-r"], capture_output=True, text=True).stdout
    with (
        Sandbox.create(client=client) as gvisor,
        Sandbox.create(client=client, runtime="oci") as oci,
    ):
        assert (gvisor.info.runtime, oci.info.runtime) == ("runsc", "oci")
        assert gvisor.commands.run("uname -r").stdout != host_release
        assert oci.commands.run("uname -r").stdout == host_release
        # Each pauses as its own backend can: runc through CRIU where it works, runsc
        # (on the host's network stack here) by freezing.
        expected = "checkpoint" if listed["oci"].checkpoint else "freeze"
        assert oci.pause().pause_mode == expected
        assert gvisor.pause().pause_mode == "freeze"
        assert Sandbox.get(oci.id, client=client).info.runtime == "oci"
        assert oci.commands.run("echo back").stdout == "back\n"  # resumed on its own backend


async def test_the_async_sdk_asks_for_a_backend(server: ServerProcess) -> None:
    async with (
        AsyncSandlot(api_url=server.url, api_key=server.api_key) as aclient,
        await AsyncSandbox.create(client=aclient, runtime="oci") as sbx,
    ):
        assert sbx.info.runtime == "oci"
        assert (await sbx.refresh()).runtime == "oci"


def test_a_runtime_the_server_does_not_offer_is_refused(
    client: Sandlot, server: ServerProcess
) -> None:
    with pytest.raises(InvalidConfigError, match="available: runsc, oci"):
        Sandbox.create(client=client, runtime="kata")
    answer = httpx.post(
        f"{server.url}/v1/sandboxes",
        json={"template": "base", "runtime": "firecracker"},
        headers={"X-API-Key": server.api_key},
    )
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["code"] == "INVALID_CONFIG"
    assert error["details"]["available"] == ["runsc", "oci"]


def test_memory_snapshots_are_refused_with_the_reason(sandbox: Sandbox, checkpoints: bool) -> None:
    """runsc cannot checkpoint a sandbox on the host's network stack: it says so in the
    capability list, and a memory snapshot is refused with that reason."""
    assert not checkpoints
    with pytest.raises(InvalidConfigError, match="runsc cannot take memory snapshots"):
        sandbox.snapshots.create("with-memory", memory=True)
    assert not sandbox.snapshots.create("files").has_memory


@pytest.fixture
def orphans_go_to_init() -> Iterator[None]:
    """Sandboxes orphaned by a killed server go to the host's init, as on a real host,
    not to this test process: a test that runs a backend in-process makes it their
    subreaper, and runsc waits for zombies this process would never collect."""
    libc = ctypes.CDLL(None, use_errno=True)
    was = ctypes.c_int()
    libc.prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(was), 0, 0, 0)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
    yield
    libc.prctl(PR_SET_CHILD_SUBREAPER, was.value, 0, 0, 0)


@pytest.mark.usefixtures("orphans_go_to_init")
def test_a_sandbox_keeps_its_backend_across_a_server_crash(tmp_path: Path) -> None:
    """On a server whose default is oci, a runsc sandbox is found again by the marker
    on its disk after the server is killed: adopted, paused and resumed by runsc, and
    destroyed without a trace."""
    ensure_base_template()
    env = {"SANDLOT_WARM_POOL_SIZE": "0", "SANDLOT_RUNTIMES": '["runsc"]'}
    srv = ServerProcess(tmp_path / "data", extra_env=env)
    srv.data_dir.mkdir()
    srv.start()
    host_release = subprocess.run(["uname", "-r"], capture_output=True, text=True).stdout
    try:
        with Sandlot(api_url=srv.url, api_key=srv.api_key) as client:
            sbx = Sandbox.create(client=client, runtime="runsc")
            sbx.commands.run(COUNTER)
            before = wait_counting(sbx, 5)
        srv.stop(signal.SIGKILL)
        srv.start()
        with Sandlot(api_url=srv.url, api_key=srv.api_key) as client:
            again = Sandbox.get(sbx.id, client=client)
            assert (again.status, again.info.runtime) == ("running", "runsc")
            assert wait_counting(again, before) > before  # its processes ran on
            assert again.commands.run("uname -r").stdout != host_release
            assert again.pause().pause_mode == "freeze"
            assert again.resume().status == "running"
            assert doctor_check(srv).returncode == 0
            again.kill()
            assert host_traces(sbx.id, srv.data_dir) == []
    finally:
        srv.destroy_all()
        srv.stop()
