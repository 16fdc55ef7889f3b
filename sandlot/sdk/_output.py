"""What a handle keeps of a process's output: a bounded tail for the result, and
lines cut from a byte stream for the line callbacks."""

from __future__ import annotations

import codecs

# A long-running process may print without end; the result keeps the last bytes only.
DEFAULT_TAIL_BYTES = 16 * 1024 * 1024


class OutputTail:
    """The last `limit` bytes written to it; `truncated` once anything fell off."""

    def __init__(self, limit: int = DEFAULT_TAIL_BYTES) -> None:
        self._limit = limit
        self._buffer = bytearray()
        self.truncated = False

    def add(self, data: bytes) -> None:
        self._buffer += data
        excess = len(self._buffer) - self._limit
        if excess > 0:
            del self._buffer[:excess]  # cheap: bytearray drops a prefix without copying
            self.truncated = True

    def getvalue(self) -> bytes:
        return bytes(self._buffer)

    def text(self) -> str:
        return self._buffer.decode("utf-8", "replace")


class LineSplitter:
    """Cuts UTF-8 bytes, arriving in any chunks, into lines without their line ending.

    A character or a line split across chunks is put back together; invalid bytes
    become U+FFFD.
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._partial: list[str] = []

    def feed(self, data: bytes) -> list[str]:
        return self._cut(self._decoder.decode(data))

    def flush(self) -> list[str]:
        """The unfinished last line, if any, once the stream has ended."""
        lines = self._cut(self._decoder.decode(b"", final=True))
        rest = "".join(self._partial)
        self._partial.clear()
        return [*lines, rest.removesuffix("\r")] if rest else lines

    def _cut(self, text: str) -> list[str]:
        if "\n" not in text:
            if text:
                self._partial.append(text)
            return []
        first, *middle, last = text.split("\n")
        lines = ["".join([*self._partial, first]), *middle]
        self._partial = [last] if last else []
        return [line.removesuffix("\r") for line in lines]
