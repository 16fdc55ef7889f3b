"""Workspace volumes through a real server and real sandboxes: the reference documents'
create body verbatim, persistence across destroy, sharing, read-only mounts, sizes and
quotas, per-organisation names, ownership across sandboxes, pause and branch with
volumes mounted, the files API without a sandbox, refused deletes, and a crash that
leaves `doctor --check` clean."""

from __future__ import annotations

import contextlib
import secrets
import signal
import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from sandlot import Sandbox, Sandlot
from sandlot.errors import (
    FileNotFoundInSandboxError,
    FileOperationError,
    InvalidConfigError,
    InvalidStateError,
    ResourceExhaustedError,
    VolumeNotFoundError,
)
from sandlot.testing import ServerProcess, ensure_base_template
from tests.e2e.test_cleanup_and_restart import doctor_check


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def headers(server: ServerProcess, key: str | None = None) -> dict[str, str]:
    return {"X-API-Key": key or server.api_key}


@pytest.fixture
def small_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """An organisation may hold 300 MiB of volumes here."""
    ensure_base_template()
    srv = ServerProcess(
        tmp_path_factory.mktemp("volumes-small"),
        extra_env={"SANDLOT_ORG_MAX_VOLUME_MB": "300", "SANDLOT_WARM_POOL_SIZE": "0"},
    )
    srv.start()
    yield srv
    srv.destroy_all()
    srv.stop()


def test_the_reference_body_works_verbatim_and_files_outlive_the_sandbox(
    server: ServerProcess, client: Sandlot
) -> None:
    code, data = unique("my-code"), unique("datasets")
    client.volumes.create(data, size="64MB").files.write("/train.csv", "a,b\n1,2\n")
    body = {
        "template": "base",
        "mounts": [
            {"workspaceId": code, "path": "/workspace"},
            {"workspaceId": data, "path": "/data", "readOnly": True},
        ],
        "idleTimeout": 600,
        "resources": {"vcpus": 2, "memory": "4GB"},
    }
    r = httpx.post(f"{server.url}/v1/sandboxes", json=body, headers=headers(server), timeout=60)
    assert r.status_code == 201, r.text
    created = r.json()["data"]
    assert created["mounts"] == [
        {"workspaceId": data, "path": "/data", "readOnly": True},
        {"workspaceId": code, "path": "/workspace", "readOnly": False},
    ]
    first = Sandbox.get(created["id"], client=client)
    try:
        first.commands.run("echo kept > /workspace/state.txt")
        assert first.files.read("/data/train.csv") == "a,b\n1,2\n"
        refused = first.commands.run("touch /data/x")
        assert refused.exit_code != 0 and "Read-only file system" in refused.stderr
    finally:
        first.kill()
    assert code in {v.name for v in client.volumes.list()}  # made by its first mount
    with Sandbox.create(mounts=[{"workspace_id": code, "path": "/src"}], client=client) as second:
        assert second.files.read("/src/state.txt") == "kept\n"


def test_two_sandboxes_mounting_one_volume_see_each_others_writes_at_once(
    client: Sandlot,
) -> None:
    name = unique("shared")
    mount = [{"workspace_id": name, "path": "/workspace"}]
    with (
        Sandbox.create(mounts=mount, client=client) as agent,
        Sandbox.create(mounts=mount, client=client) as runner,
    ):
        agent.commands.run("echo from-agent > /workspace/handoff")
        assert runner.commands.run("cat /workspace/handoff").stdout == "from-agent\n"
        runner.commands.run("echo from-runner >> /workspace/handoff")
        assert agent.files.read("/workspace/handoff") == "from-agent\nfrom-runner\n"
        assert sorted(client.volumes.get(name).info.mounted_by) == sorted([agent.id, runner.id])


def test_a_file_keeps_its_owner_from_one_sandbox_to_the_next(client: Sandlot) -> None:
    name = unique("owned")
    mount = [{"workspace_id": name, "path": "/workspace"}]
    with Sandbox.create(mounts=mount, client=client) as first:
        first.commands.run("echo x > /workspace/f && chown 1000:1000 /workspace/f")
    with Sandbox.create(mounts=mount, client=client) as second:
        assert second.commands.run("stat -c %u:%g /workspace/f").stdout == "1000:1000\n"
        assert second.commands.run("stat -c %u /workspace").stdout == "0\n"


def test_a_volume_stops_at_its_size_and_an_organisation_at_its_quota(
    small_server: ServerProcess,
) -> None:
    with Sandlot(small_server.url, small_server.api_key) as client:
        client.volumes.create("small", size=64)
        with Sandbox.create(mounts=[{"workspace_id": "small", "path": "/w"}], client=client) as s:
            full = s.commands.run("dd if=/dev/zero of=/w/big bs=1M count=100")
            assert full.exit_code != 0 and "No space left on device" in full.stderr
            assert s.commands.run("echo still-works").stdout == "still-works\n"
        with pytest.raises(ResourceExhaustedError) as refused:
            client.volumes.create("large", size="1GB")
        assert not refused.value.retryable
        assert refused.value.details["limit"] == 300
        with pytest.raises(ResourceExhaustedError):  # a first mount is held to it too
            Sandbox.create(mounts=[{"workspace_id": "auto", "path": "/w"}], client=client)


def test_names_are_each_organisations_own(server: ServerProcess, client: Sandlot) -> None:
    name = unique("private")
    client.volumes.create(name, size=32).files.write("/secret.txt", "ours")
    other_org = client.orgs.create(unique("volume-stranger"))
    stranger_key = client.keys.create(other_org.id, ["admin"]).key
    r = httpx.get(f"{server.url}/v1/volumes/{name}", headers=headers(server, stranger_key))
    assert r.status_code == 404 and r.json()["error"]["code"] == "VOLUME_NOT_FOUND"
    r = httpx.get(
        f"{server.url}/v1/volumes/{name}/files",
        params={"path": "/secret.txt"},
        headers=headers(server, stranger_key),
    )
    assert r.status_code == 404
    with (
        Sandlot(server.url, stranger_key) as stranger,
        Sandbox.create(mounts=[{"workspace_id": name, "path": "/w"}], client=stranger) as sbx,
    ):
        assert sbx.commands.run("ls -A /w").stdout == "lost+found\n"  # a fresh one of its own
        assert [v.name for v in stranger.volumes.list()] == [name]
    with Sandlot(server.url, stranger_key) as stranger:
        stranger.volumes.delete(name)
    assert client.volumes.get(name).files.read("/secret.txt") == "ours"


@pytest.mark.parametrize(
    ("mounts", "fragment"),
    [
        ([{"workspaceId": "v", "path": "/proc/x"}], "/proc"),
        ([{"workspaceId": "v", "path": "/"}], "not at /"),
        ([{"workspaceId": "v", "path": "workspace"}], "absolute"),
        ([{"workspaceId": "v", "path": "/.sandlot/run"}], "/.sandlot"),
        (
            [{"workspaceId": "a", "path": "/w"}, {"workspaceId": "b", "path": "/w/inner"}],
            "overlap",
        ),
        ([{"workspaceId": "../etc", "path": "/w"}], "volume name"),
    ],
)
def test_bad_mounts_are_refused_before_anything_is_made(
    server: ServerProcess, mounts: list[dict[str, str]], fragment: str
) -> None:
    r = httpx.post(
        f"{server.url}/v1/sandboxes",
        json={"template": "base", "mounts": mounts},
        headers=headers(server),
        timeout=30,
    )
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "INVALID_CONFIG" and fragment in error["message"]
    assert error["retryable"] is False


def test_pause_resume_and_branch_keep_the_mounts(client: Sandlot) -> None:
    name = unique("across")
    with Sandbox.create(mounts=[{"workspace_id": name, "path": "/workspace"}], client=client) as s:
        s.commands.run("echo before > /workspace/note")
        s.pause()
        s.resume()
        assert s.files.read("/workspace/note") == "before\n"
        s.commands.run("echo after-resume >> /workspace/note")
        snap = s.snapshots.create("with-volume", memory=False)
        s.commands.run("echo after-snapshot >> /workspace/note")
        with s.branch(snap.name) as branch:
            # A volume's contents are its own, not the snapshot's: the branch sees now.
            assert branch.files.read("/workspace/note") == "before\nafter-resume\nafter-snapshot\n"
            assert [m.workspace_id for m in branch.refresh().mounts or []] == [name]


def test_files_without_a_sandbox_and_through_one(client: Sandlot) -> None:
    name = unique("notes")
    volume = client.volumes.create(name, size=32)
    entry = volume.files.write("/dir/notes.txt", "kept")
    assert (entry.path, entry.size) == ("/dir/notes.txt", 4)
    assert volume.files.read("/dir/notes.txt") == "kept"
    assert [e.name for e in volume.files.list("/dir")] == ["notes.txt"]
    assert volume.files.exists("/dir/notes.txt") and not volume.files.exists("/dir/nope")
    assert volume.files.stat("/dir").type == "dir"
    assert volume.files.mkdir("/made/deep", parents=True).path == "/made/deep"
    with Sandbox.create(mounts=[{"workspace_id": name, "path": "/n"}], client=client) as sbx:
        assert sbx.commands.run("cat /n/dir/notes.txt; stat -c %u /n/dir/notes.txt").stdout == (
            "kept0\n"
        )
        sbx.commands.run("echo from-inside > /n/inside.txt; ln -s / /n/root; ln -s /etc /n/etc")
        assert volume.files.read("/inside.txt") == "from-inside\n"
        assert sbx.commands.run("stat -c %u /n/made/deep").stdout == "0\n"
        # What a sandbox leaves in a volume is never followed as a host path.
        assert volume.files.read("/root/inside.txt") == "from-inside\n"  # `/` is the volume's
        with pytest.raises((FileNotFoundInSandboxError, FileOperationError)):
            volume.files.read("/etc/hostname")  # `/etc` is the volume's: a link to itself
        with pytest.raises(FileOperationError):
            volume.files.write("/etc/planted", "x")  # no write through a symlink
        assert sbx.commands.run("ls /etc/planted 2>&1 || true").stdout.startswith("ls:")
    volume.files.remove("/dir", recursive=True)
    assert [e.name for e in volume.files.list("/")] == [
        "etc",
        "inside.txt",
        "lost+found",
        "made",
        "root",
    ]


def test_a_mounted_volume_is_not_deleted_unless_forced(client: Sandlot) -> None:
    name = unique("busy")
    sbx = Sandbox.create(mounts=[{"workspace_id": name, "path": "/w"}], client=client)
    with pytest.raises(InvalidStateError) as refused:
        client.volumes.delete(name)
    assert refused.value.details["mountedBy"] == [sbx.id]
    client.volumes.delete(name, force=True)
    assert sbx.refresh().status == "terminated"
    with pytest.raises(VolumeNotFoundError):
        client.volumes.get(name)


def test_a_size_is_given_one_way(client: Sandlot, server: ServerProcess) -> None:
    r = httpx.post(
        f"{server.url}/v1/volumes",
        json={"name": unique("both"), "size": "1GB", "sizeMb": 10},
        headers=headers(server),
    )
    assert r.status_code == 400
    with pytest.raises(InvalidConfigError):
        client.volumes.create(unique("huge"), size="100TB")


def test_a_crash_leaves_nothing_doctor_check_objects_to(fresh_server: ServerProcess) -> None:
    srv = fresh_server
    with Sandlot(srv.url, srv.api_key) as client:
        client.volumes.create("kept", size=32).files.write("/a", "a")
        sbx = Sandbox.create(mounts=[{"workspace_id": "kept", "path": "/w"}], client=client)
        client.volumes.create("doomed", size=32)
    srv.stop(signal.SIGKILL)
    # What a kill in the middle of a create and of a delete leaves: rows half-way.
    with sqlite3.connect(srv.data_dir / "sandlot.db") as db:
        db.execute("UPDATE volumes SET status = 'deleting' WHERE name = 'doomed'")
        db.execute(
            "INSERT INTO volumes (id, org_id, name, size_mb, status, created_at) "
            "SELECT 'vol-halfmade01', org_id, 'half', 32, 'creating', created_at FROM volumes "
            "WHERE name = 'kept'"
        )
    (srv.data_dir / "volumes" / "vol-halfmade01").mkdir()
    check = doctor_check(srv)
    assert check.returncode == 1 and "left deleting" in check.stdout, check.stdout
    srv.start()
    with Sandlot(srv.url, srv.api_key) as client:
        assert [v.name for v in client.volumes.list()] == ["kept"]
        assert client.volumes.get("kept").files.read("/a") == "a"
        assert Sandbox.get(sbx.id, client=client).commands.run("cat /w/a").stdout == "a"
    check = doctor_check(srv)
    assert check.returncode == 0, check.stdout


@pytest.mark.parametrize("delay", [0.02, 0.1, 0.3])
def test_a_kill_during_create_mount_and_delete_leaves_doctor_check_clean(
    fresh_server: ServerProcess, delay: float
) -> None:
    """The server killed -9 while a create makes a volume for its first mount, then
    while a delete removes one: each start settles what was cut short."""
    srv = fresh_server
    with Sandlot(srv.url, srv.api_key) as client:
        client.volumes.create("to-delete", size=32)
    for send in (
        lambda: httpx.post(
            f"{srv.url}/v1/sandboxes",
            json={"mounts": [{"workspaceId": "first-mount", "path": "/w"}]},
            headers=headers(srv),
            timeout=30,
        ),
        lambda: httpx.delete(f"{srv.url}/v1/volumes/to-delete", headers=headers(srv), timeout=30),
    ):
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(send)
            time.sleep(delay)
            srv.stop(signal.SIGKILL)
            with contextlib.suppress(httpx.HTTPError):
                pending.result()
        srv.start()
        check = doctor_check(srv)
        assert check.returncode == 0, check.stdout
        with Sandlot(srv.url, srv.api_key) as client:
            for volume in client.volumes.list():  # what is listed is whole and usable
                client.volumes.get(volume.name).files.write("/probe", "ok")
