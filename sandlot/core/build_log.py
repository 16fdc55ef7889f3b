"""A build's log file, bounded: a RUN step's output is the tenant's to choose.

A step that prints forever would otherwise fill the host's disk through the log. Past
the cap the log says once that it was cut and then drops what comes, while the build
itself carries on (its outcome is still recorded on the build row and in the last line).
"""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

BUILD_LOG_MAX_BYTES = 8 << 20
"""Bytes of step output a build log keeps; the build's own closing lines always fit."""
_RESERVE = 4096
"""Room kept past the cap for the closing line (ready or failed, and why)."""


class CappedLog:
    def __init__(self, file: TextIO, limit: int) -> None:
        self._file = file
        self._limit = limit
        self._written = file.tell()
        self._cut = False

    @classmethod
    def open(cls, path: Path, limit: int) -> CappedLog:
        return cls(path.open("a", buffering=1, encoding="utf-8", errors="replace"), limit)

    def close(self) -> None:
        self._file.close()

    def write(self, text: str) -> int:
        """Step output: kept while under the cap."""
        if self._cut:
            return len(text)
        room = self._limit - self._written
        if len(text.encode("utf-8", "replace")) > room:
            self._emit(text.encode("utf-8", "replace")[: max(room, 0)].decode("utf-8", "ignore"))
            self._emit(f"\n[log cut at {self._limit} bytes; the build goes on]\n")
            self._cut = True
            return len(text)
        return self._emit(text)

    def close_with(self, text: str) -> None:
        """The build's closing line, written even past the cap (bounded by itself)."""
        self._emit(text[:_RESERVE])

    def _emit(self, text: str) -> int:
        self._written += len(text.encode("utf-8", "replace"))
        return self._file.write(text)
