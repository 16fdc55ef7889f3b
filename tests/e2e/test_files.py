"""File operations through the SDK, including streamed transfers that never sit in memory."""

from __future__ import annotations

import hashlib
import io

import pytest

from sandlot import Sandbox
from sandlot.errors import FileExistsInSandboxError, FileNotFoundInSandboxError, FileOperationError
from sandlot.testing import ServerProcess, process_memory_mb


def test_write_read_text_and_bytes(sandbox: Sandbox) -> None:
    entry = sandbox.files.write("/workspace/deep/er/a.txt", "héllo")
    assert entry.type == "file" and entry.size == len("héllo".encode())
    assert sandbox.files.read("/workspace/deep/er/a.txt") == "héllo"
    sandbox.files.write("/workspace/b.bin", bytes(range(256)))
    assert sandbox.files.read_bytes("/workspace/b.bin") == bytes(range(256))
    sandbox.files.write("/workspace/empty", b"")
    assert sandbox.files.read_bytes("/workspace/empty") == b""


def test_relative_paths_resolve_against_root_home(sandbox: Sandbox) -> None:
    sandbox.files.write("notes.txt", "n")
    assert sandbox.commands.run("cat /root/notes.txt").stdout == "n"


def test_list_stat_exists(sandbox: Sandbox) -> None:
    sandbox.files.write("/workspace/l/f.txt", "12345")
    sandbox.files.mkdir("/workspace/l/sub")
    sandbox.commands.run("ln -s f.txt /workspace/l/link")
    entries = {e.name: e for e in sandbox.files.list("/workspace/l")}
    assert set(entries) == {"f.txt", "sub", "link"}
    assert entries["f.txt"].type == "file" and entries["f.txt"].size == 5
    assert entries["f.txt"].path == "/workspace/l/f.txt"
    assert entries["sub"].type == "dir"
    assert entries["link"].type == "symlink" and entries["link"].symlink_target == "f.txt"
    assert entries["f.txt"].mode == 0o644 and entries["f.txt"].mtime.year >= 2024
    assert sandbox.files.stat("/workspace/l/f.txt").size == 5
    assert sandbox.files.exists("/workspace/l/f.txt")
    assert not sandbox.files.exists("/workspace/l/nope")


def test_names_that_are_not_utf8_are_listed_with_replacement_characters(
    sandbox: Sandbox,
) -> None:
    """A file name is any bytes; one that is not UTF-8 shows with U+FFFD, never a 500."""
    sandbox.commands.run("mkdir -p /tmp/odd && touch \"/tmp/odd/$(printf 'a\\377\\376b')\"")
    entries = sandbox.files.list("/tmp/odd")
    assert [e.name for e in entries] == ["a\ufffd\ufffdb"]


def test_mkdir_and_remove(sandbox: Sandbox) -> None:
    sandbox.files.mkdir("/workspace/a/b/c", parents=True)
    assert sandbox.files.stat("/workspace/a/b/c").type == "dir"
    with pytest.raises(FileExistsInSandboxError):
        sandbox.files.mkdir("/workspace/a/b/c")
    sandbox.files.write("/workspace/a/b/c/f", "x")
    with pytest.raises(FileOperationError):
        sandbox.files.remove("/workspace/a")
    sandbox.files.remove("/workspace/a", recursive=True)
    assert not sandbox.files.exists("/workspace/a")


def test_replace_is_surgical(sandbox: Sandbox) -> None:
    sandbox.files.write("/workspace/r.py", "print('hi')\n")
    assert sandbox.files.replace("/workspace/r.py", old="hi", new="hello") == 1
    assert sandbox.files.read("/workspace/r.py") == "print('hello')\n"
    with pytest.raises(FileOperationError):
        sandbox.files.replace("/workspace/r.py", old="absent", new="x")
    sandbox.files.write("/workspace/twice", "a a")
    with pytest.raises(FileOperationError):
        sandbox.files.replace("/workspace/twice", old="a", new="b")
    assert sandbox.files.read("/workspace/twice") == "a a"


def test_missing_file_errors(sandbox: Sandbox) -> None:
    with pytest.raises(FileNotFoundInSandboxError) as err:
        sandbox.files.read("/nope/nothing")
    assert err.value.code == "FILE_NOT_FOUND"
    with pytest.raises(FileNotFoundInSandboxError):
        sandbox.files.stat("/nope")
    with pytest.raises(FileNotFoundInSandboxError):
        sandbox.files.list("/nope")


class PatternStream(io.RawIOBase):
    """A readable stream of `size` bytes made on the fly, hashing what it hands out."""

    def __init__(self, size: int) -> None:
        self.left = size
        self.block = hashlib.sha256(b"seed").digest() * 32768  # 1 MiB
        self.sha = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        n = min(len(buffer), self.left, len(self.block))
        buffer[:n] = self.block[:n]
        self.sha.update(self.block[:n])
        self.left -= n
        return n


class HashingSink(io.RawIOBase):
    def __init__(self) -> None:
        self.sha = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        self.sha.update(data)
        self.size += len(data)
        return len(data)


def test_large_upload_and_download_are_streamed(sandbox: Sandbox, server: ServerProcess) -> None:
    size = 512 * 1024 * 1024
    assert server.proc is not None
    source = PatternStream(size)
    sandbox.files.upload("/workspace/big.bin", source)
    assert sandbox.files.stat("/workspace/big.bin").size == size
    inside = sandbox.commands.run("sha256sum /workspace/big.bin").stdout.split()[0]
    assert inside == source.sha.hexdigest()
    sink = HashingSink()
    sandbox.files.download("/workspace/big.bin", sink)
    assert sink.size == size and sink.sha.hexdigest() == source.sha.hexdigest()
    # Neither direction may hold the file: the server's peak RSS stays far below its size.
    assert process_memory_mb(server.proc.pid, "VmHWM") < 256
