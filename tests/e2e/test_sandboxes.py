"""Sandbox lifecycle through the SDK against the real server."""

from __future__ import annotations

import re
import uuid

import pytest

from sandlot import AsyncSandbox, Sandbox, Sandlot
from sandlot.errors import SandboxNotFoundError, TemplateNotFoundError


def test_issue_walkthrough(client: Sandlot) -> None:
    with Sandbox.create(
        template="base",
        resources={"vcpus": 1, "memory_mb": 512},
        env={"A": "1"},
        metadata={"user": "u1"},
        client=client,
    ) as sbx:
        assert re.fullmatch(r"sbx-[a-z0-9]{10}", sbx.id)
        assert sbx.status == "running"
        r = sbx.commands.run("echo $A; id -u", cwd="/root", env={"B": "2"}, timeout=30)
        assert r.stdout == "1\n0\n" and r.exit_code == 0 and r.stderr == ""
        assert r.signal is None and r.duration_ms > 0
        sbx.files.write("/workspace/app.py", "print('hi')")
        assert sbx.commands.run("python3 /workspace/app.py").stdout == "hi\n"
        assert sbx.files.read("/workspace/app.py") == "print('hi')"
        sandbox_id = sbx.id
    assert Sandbox.get(sandbox_id, client=client).status == "terminated"


def test_create_reports_resources_env_metadata(client: Sandlot) -> None:
    with Sandbox.create(
        resources={"vcpus": 2, "memory": "1GB"}, env={"X": "y"}, metadata={"k": "v"}, client=client
    ) as sbx:
        info = Sandbox.get(sbx.id, client=client).info
        assert info.resources.vcpus == 2
        assert info.resources.memory_mb == 1024
        assert info.env == {"X": "y"} and info.metadata == {"k": "v"}
        assert info.template == "base"
        assert info.started_at is not None and info.created_at <= info.started_at
        # Whether it started cold or was handed over warm, the limits are the asked ones.
        assert sbx.usage().memory_limit_bytes == 1024 * 1024 * 1024
        assert sbx.commands.run("nproc").stdout == "2\n"
        assert sbx.commands.run("echo $X").stdout == "y\n"


def test_list_filters_by_status_and_metadata(client: Sandlot) -> None:
    tag = uuid.uuid4().hex
    a = Sandbox.create(metadata={"run": tag, "role": "a"}, client=client)
    b = Sandbox.create(metadata={"run": tag, "role": "b"}, client=client)
    try:
        both = Sandbox.list(metadata={"run": tag}, client=client)
        assert {s.id for s in both} == {a.id, b.id}
        only_a = Sandbox.list(metadata={"run": tag, "role": "a"}, client=client)
        assert [s.id for s in only_a] == [a.id]
        b.kill()
        running = Sandbox.list(status="running", metadata={"run": tag}, client=client)
        assert [s.id for s in running] == [a.id]
        first = Sandbox.list(metadata={"run": tag}, limit=1, offset=0, client=client)
        second = Sandbox.list(metadata={"run": tag}, limit=1, offset=1, client=client)
        assert len(first) == len(second) == 1 and first[0].id != second[0].id
    finally:
        a.kill()
        b.kill()


def test_unknown_sandbox_and_template(client: Sandlot) -> None:
    with pytest.raises(SandboxNotFoundError) as err:
        Sandbox.get("sbx-0000000000", client=client)
    assert err.value.code == "SANDBOX_NOT_FOUND" and not err.value.retryable
    with pytest.raises(TemplateNotFoundError) as terr:
        Sandbox.create(template="no-such-template", client=client)
    assert terr.value.code == "TEMPLATE_NOT_FOUND"


def test_kill_is_idempotent_through_context_manager(client: Sandlot) -> None:
    with Sandbox.create(client=client) as sbx:
        sbx.kill()
    assert Sandbox.get(sbx.id, client=client).status == "terminated"


async def test_async_sandbox(server: object) -> None:
    from sandlot import AsyncSandlot

    srv = server
    async with AsyncSandlot(api_url=srv.url, api_key=srv.api_key) as client:  # type: ignore[attr-defined]
        async with await AsyncSandbox.create(env={"A": "async"}, client=client) as sbx:
            r = await sbx.commands.run("echo $A")
            assert r.stdout == "async\n"
            await sbx.files.write("/workspace/a.txt", b"\x00\x01binary")
            assert await sbx.files.read_bytes("/workspace/a.txt") == b"\x00\x01binary"
            assert await sbx.files.exists("/workspace/a.txt")
            listed = await AsyncSandbox.list(status="running", client=client)
            assert sbx.id in {s.id for s in listed}
        got = await AsyncSandbox.get(sbx.id, client=client)
        assert got.status == "terminated"
