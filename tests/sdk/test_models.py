"""The typed values: wire names, resource requests and forward compatibility."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sandlot.errors import InvalidConfigError
from sandlot.sdk import CommandResult, EntryInfo, SandboxInfo
from sandlot.sdk._models import resources_to_api

SANDBOX = {
    "id": "sbx-7k2m9p4q1x",
    "status": "running",
    "template": "base",
    "resources": {"vcpus": 1, "memoryMb": 512, "diskMb": 10240},
    "env": {"A": "1"},
    "metadata": {"user": "u1"},
    "createdAt": "2025-01-02T03:04:05Z",
    "startedAt": "2025-01-02T03:04:06.5Z",
    "endedAt": None,
    "statusReason": None,
    "idleTimeout": 600,
    "timeout": None,
}


def test_resources_become_camel_case() -> None:
    assert resources_to_api({"vcpus": 2, "memory_mb": 512, "disk_mb": 2048}) == {
        "vcpus": 2,
        "memoryMb": 512,
        "diskMb": 2048,
    }
    assert resources_to_api({"memory": "4GB", "disk": "10GB"}) == {"memory": "4GB", "disk": "10GB"}


def test_resources_accept_wire_names_and_drop_nones() -> None:
    assert resources_to_api({"memoryMb": 256, "disk_mb": None}) == {"memoryMb": 256}
    assert resources_to_api(None) == {}


def test_unknown_resource_is_refused_before_sending() -> None:
    with pytest.raises(InvalidConfigError) as err:
        resources_to_api({"cpus": 2})
    assert "cpus" in err.value.message and "vcpus" in err.value.message
    assert err.value.details == {"unknown": ["cpus"]}


def test_sandbox_info_from_the_wire() -> None:
    info = SandboxInfo.model_validate(SANDBOX)
    assert info.id == "sbx-7k2m9p4q1x" and info.status == "running"
    assert info.resources.memory_mb == 512 and info.resources.disk_mb == 10240
    assert info.created_at == datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert info.started_at is not None and info.ended_at is None
    assert info.idle_timeout == 600 and info.timeout is None
    assert info.metadata == {"user": "u1"}


def test_sandbox_info_ignores_fields_it_does_not_know() -> None:
    info = SandboxInfo.model_validate({**SANDBOX, "nodeId": "n1", "expiresAt": None})
    assert info.expires_at is None


def test_to_api_gives_back_the_wire_shape() -> None:
    wire = SandboxInfo.model_validate(SANDBOX).to_api()
    assert wire["resources"] == {"vcpus": 1, "memoryMb": 512, "diskMb": 10240}
    assert wire["idleTimeout"] == 600 and wire["statusReason"] is None
    assert wire["createdAt"].startswith("2025-01-02T03:04:05")


def test_command_result() -> None:
    result = CommandResult.model_validate(
        {"stdout": "hi\n", "stderr": "", "exitCode": None, "signal": "SIGKILL", "durationMs": 3.5}
    )
    assert (result.exit_code, result.signal, result.duration_ms) == (None, "SIGKILL", 3.5)
    assert result.oom_killed is False


def test_entry_info_and_special_files() -> None:
    entry = EntryInfo.model_validate(
        {
            "name": "link",
            "path": "/w/link",
            "type": "symlink",
            "size": 5,
            "mode": 0o777,
            "mtime": "2025-01-02T03:04:05+00:00",
            "symlinkTarget": "f.txt",
        }
    )
    assert entry.type == "symlink" and entry.symlink_target == "f.txt" and entry.mode == 0o777
    fifo = EntryInfo.model_validate(
        {"name": "p", "path": "/run/p", "type": "fifo", "size": 0, "mode": 0o600, "mtime": 0}
    )
    assert fifo.type == "other"
