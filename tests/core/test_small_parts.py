"""Core's small parts on their own: denied-name events, keyed locks, usage windows and
the words an unexpected failure is shown to users in."""

from __future__ import annotations

import asyncio
import errno
from datetime import UTC, datetime, timedelta

from sandlot.core.denied_names import PER_WINDOW, REPEAT_SECONDS, WINDOW_SECONDS, DeniedNames
from sandlot.core.incidents import internal_error, public_reason
from sandlot.core.keyed_locks import KeyedLocks
from sandlot.core.usage import usage_in_window
from sandlot.errors import FileOperationError


def test_a_name_asked_again_is_reported_once_per_repeat_window() -> None:
    names = DeniedNames()
    assert names.report("evil.test", 0.0) == {"name": "evil.test"}
    assert names.report("evil.test", 1.0) is None
    assert names.report("evil.test", REPEAT_SECONDS + 0.1) == {"name": "evil.test"}


def test_endless_distinct_names_are_bounded_and_counted_on_the_next_event() -> None:
    names = DeniedNames()
    reported = [names.report(f"n{i}.test", 0.001 * i) for i in range(PER_WINDOW * 5)]
    assert sum(r is not None for r in reported) == PER_WINDOW
    later = names.report("late.test", WINDOW_SECONDS + 1)
    assert later == {"name": "late.test", "unreported": PER_WINDOW * 4}


def test_keyed_locks_serialise_one_key_and_forget_it_when_free() -> None:
    async def run() -> tuple[list[str], int, bool]:
        locks = KeyedLocks()
        order: list[str] = []

        async def work(key: str, name: str) -> None:
            async with locks.hold(key):
                order.append(f"{name} in")
                await asyncio.sleep(0.01)
                order.append(f"{name} out")

        first = asyncio.create_task(work("sbx-1", "a"))
        await asyncio.sleep(0)
        busy = locks.busy("sbx-1")
        await asyncio.gather(first, work("sbx-1", "b"), work("sbx-2", "c"))
        return order, len(locks), busy

    order, left, busy = asyncio.run(run())
    assert busy
    assert order.index("a out") < order.index("b in")  # one key, one at a time
    assert order.index("c in") < order.index("a out")  # another key does not wait
    assert left == 0  # nothing kept for keys nobody holds


def test_usage_is_clipped_to_the_window_and_running_sandboxes_count_to_its_end() -> None:
    start = datetime(2026, 12, 1, tzinfo=UTC)
    end = start + timedelta(hours=1)
    records = usage_in_window(
        [
            ("before", 1, 512, start - timedelta(hours=2), start - timedelta(hours=1)),
            ("across", 2, 1024, start - timedelta(minutes=30), start + timedelta(minutes=30)),
            ("running", 1, 512, start + timedelta(minutes=50), None),
            ("never", 1, 512, None, None),
        ],
        start,
        end,
    )
    assert [(r.sandbox_id, r.runtime_seconds) for r in records] == [
        ("across", 1800.0),
        ("running", 600.0),
    ]
    assert records[0].vcpu_seconds == 3600.0 and records[0].memory_mb_seconds == 1800.0 * 1024


def test_an_unexpected_failure_is_shown_without_paths_and_logged_under_an_id() -> None:
    leak = OSError(errno.ENOSPC, "No space left", "/var/lib/sandlot/sandboxes/sbx-1/disk.img")
    shown = internal_error(leak, "writing a disk")
    assert shown.message.startswith("no space left on device (id ")
    assert "/var/lib" not in shown.message and shown.details["errorId"] in shown.message
    assert public_reason(RuntimeError("/run/sandlot/x failed"), "x").startswith(
        "internal error (id "
    )
    ours = FileOperationError("not a directory: /workspace/a")
    assert public_reason(ours, "x") == "not a directory: /workspace/a"
