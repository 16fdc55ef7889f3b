"""A build's capped log on a real file: output under the cap is kept as it is, the
write that crosses it is cut at the cap (never inside a UTF-8 character) and followed
by one note, everything after is dropped while the writer is told it was written, a
log reopened counts what it already holds, and the build's closing line is written
even past the cap, bounded by itself.

A RUN step's output is the tenant's to choose: these bounds are what keep a step that
prints for ever from filling the host's disk.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sandlot.core.build_log import _RESERVE, BUILD_LOG_MAX_BYTES, CappedLog


def cut_note(limit: int) -> str:
    return f"\n[log cut at {limit} bytes; the build goes on]\n"


def written(path: Path, log: CappedLog) -> str:
    log.close()
    return path.read_text(encoding="utf-8")


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "build.log"


def test_output_under_the_cap_is_kept_as_written(path: Path) -> None:
    log = CappedLog.open(path, 100)
    chunks = ["Step 1/2: RUN make\n", "compiling…\n", "", "done\n"]
    returned = [log.write(chunk) for chunk in chunks]
    assert returned == [len(chunk) for chunk in chunks]
    assert written(path, log) == "".join(chunks)


@pytest.mark.parametrize(("extra", "cut"), [(-1, False), (0, False), (1, True)])
def test_the_cap_is_exact_to_the_byte(path: Path, extra: int, cut: bool) -> None:
    limit = 64
    log = CappedLog.open(path, limit)
    log.write("a" * 40)
    log.write("b" * (limit - 40 + extra))
    text = written(path, log)
    kept = ("a" * 40 + "b" * (limit - 40 + extra))[:limit]
    assert text == (kept + cut_note(limit) if cut else kept)


def test_past_the_cap_output_is_dropped_once_noted_and_the_writer_not_told(
    path: Path,
) -> None:
    log = CappedLog.open(path, 50)
    log.write("x" * 30)
    assert log.write("y" * 30) == 30  # crosses the cap: cut, but reported as written
    for _ in range(100):
        assert log.write("z" * 1000) == 1000  # dropped: a step is never made to fail
    text = written(path, log)
    assert text == "x" * 30 + "y" * 20 + cut_note(50)
    assert text.count("[log cut at") == 1 and "z" not in text


@pytest.mark.parametrize(
    ("limit", "text", "kept"),
    [
        (10, "é" * 8, "é" * 5),  # two bytes each: five fit exactly
        (11, "é" * 8, "é" * 5),  # the sixth would be cut in half: left out whole
        (7, "a€€€", "a€€"),  # three-byte characters
        (5, "🙂🙂", "🙂"),  # four-byte ones
        (3, "🙂", ""),  # not even one fits
    ],
)
def test_a_cut_never_splits_a_character(path: Path, limit: int, text: str, kept: str) -> None:
    log = CappedLog.open(path, limit)
    log.write(text)
    assert written(path, log) == kept + cut_note(limit)


def test_text_that_is_not_valid_unicode_is_logged_replaced_and_counted_so(path: Path) -> None:
    log = CappedLog.open(path, 12)
    log.write("ok \udcff ")  # a lone surrogate, as undecodable process output becomes
    log.write("and more text")
    text = written(path, log)
    assert text == "ok ? and mor" + cut_note(12)
    assert len(text.split("\n")[0].encode()) == 12


@pytest.mark.parametrize(("held", "limit", "kept"), [(90, 100, 10), (100, 100, 0), (150, 100, 0)])
def test_a_reopened_log_counts_what_it_already_holds(
    path: Path, held: int, limit: int, kept: int
) -> None:
    path.write_text("p" * held, encoding="utf-8")
    log = CappedLog.open(path, limit)
    log.write("n" * 50)
    assert written(path, log) == "p" * held + "n" * kept + cut_note(limit)


def test_the_closing_line_is_written_past_the_cap_and_bounded_by_itself(path: Path) -> None:
    log = CappedLog.open(path, 20)
    log.write("w" * 100)
    log.close_with("build failed: step 3 exited with 2\n")
    log.write("late output\n")  # after the closing line: still dropped
    text = written(path, log)
    assert text == "w" * 20 + cut_note(20) + "build failed: step 3 exited with 2\n"

    other = path.with_name("other.log")
    log = CappedLog.open(other, 20)
    log.close_with("r" * (_RESERVE * 3))
    assert written(other, log) == "r" * _RESERVE


def test_lines_reach_the_file_as_they_are_written(path: Path) -> None:
    """Line-buffered: the build's log can be followed while the build runs."""
    log = CappedLog.open(path, 1000)
    log.write("Step 1/3: FROM base\n")
    assert path.read_text(encoding="utf-8") == "Step 1/3: FROM base\n"
    log.close()


def test_a_step_that_prints_for_ever_cannot_grow_the_log_past_the_cap(path: Path) -> None:
    log = CappedLog.open(path, BUILD_LOG_MAX_BYTES)
    chunk = "0123456789abcdef" * 4096  # 64 KiB
    for _ in range(BUILD_LOG_MAX_BYTES // len(chunk) * 2):
        log.write(chunk)
    log.close_with("ready\n")
    log.close()
    size = path.stat().st_size
    assert size == BUILD_LOG_MAX_BYTES + len(cut_note(BUILD_LOG_MAX_BYTES)) + len("ready\n")
