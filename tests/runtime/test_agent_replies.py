"""The host's checks of what an agent answers: a process or file entry comes back with
exactly its documented fields, each of its type, or the call fails with a clear error;
the agent is the tenant's to replace, so nothing else it sends reaches core or the API."""

from __future__ import annotations

from typing import Any

import pytest

from sandlot.errors import InternalError
from sandlot.runtime.agent_client import _entry_info, _process_info

PROCESS: dict[str, Any] = {
    "process_id": "p1", "pid": 7, "command": ["sleep", "1"], "cwd": "/", "pty": False,
    "started_at": 1, "status": "running", "exit_code": None, "signal": None,
    "duration_ms": None, "timed_out": None,
}  # fmt: skip
ENTRY: dict[str, Any] = {
    "name": "a", "path": "/a", "type": "file", "size": 3, "mode": 420, "mtime": 1,
    "symlink_target": None,
}  # fmt: skip


def test_good_answers_keep_exactly_their_fields() -> None:
    process = _process_info({**PROCESS, "extra": "x" * 1000}, "start")
    assert set(process) == set(PROCESS) and process["started_at"] == 1.0
    entry = _entry_info({**ENTRY, "evil": True}, "stat")
    assert set(entry) == set(ENTRY) and isinstance(entry["mtime"], float)


@pytest.mark.parametrize(
    "change",
    [
        {"process_id": 5},
        {"pid": True},
        {"command": ["ok", 3]},
        {"pty": "yes"},
        {"started_at": "9999"},
        {"status": "zombie"},
        {"exit_code": 1.5},
        {"timed_out": "no"},
    ],
)
def test_a_malformed_process_is_refused(change: dict[str, Any]) -> None:
    with pytest.raises(InternalError, match="malformed process info"):
        _process_info({**PROCESS, **change}, "start")


@pytest.mark.parametrize(
    "change",
    [
        {"name": 5},
        {"type": "device"},
        {"size": "3"},
        {"mode": None},
        {"mtime": "now"},
        {"symlink_target": 7},
    ],
)
def test_a_malformed_entry_is_refused(change: dict[str, Any]) -> None:
    with pytest.raises(InternalError, match="malformed file entry"):
        _entry_info({**ENTRY, **change}, "list_dir")


def test_a_reply_that_is_not_an_object_or_lacks_a_field_is_refused() -> None:
    missing = {k: v for k, v in ENTRY.items() if k != "path"}
    bad_replies: list[object] = [None, [], "x", missing]
    for bad in bad_replies:
        with pytest.raises(InternalError):
            _entry_info(bad, "stat")
