from __future__ import annotations

from sandlot.runtime.agent_client import OutputTail


def test_unbounded_keeps_everything() -> None:
    tail = OutputTail(None)
    for chunk in (b"a" * 10, b"b" * 10):
        tail.append(chunk)
    assert tail.value() == b"a" * 10 + b"b" * 10 and not tail.dropped


def test_keeps_the_last_bytes_across_chunk_boundaries() -> None:
    tail = OutputTail(15)
    for chunk in (b"0123456789", b"abcdefghij", b"XY"):
        tail.append(chunk)
    assert tail.value() == b"789abcdefghijXY"[-15:]
    assert tail.size == 15 and tail.dropped


def test_exactly_at_the_limit_drops_nothing() -> None:
    tail = OutputTail(4)
    tail.append(b"abcd")
    assert tail.value() == b"abcd" and not tail.dropped
