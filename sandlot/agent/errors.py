"""Errors the agent answers with, carrying the stable codes of `sandlot.errors`.

The agent cannot import `sandlot.errors` (it runs on the sandbox's own python3 with only
this package), so it speaks the same codes as strings; the host's AgentClient turns them
back into the matching exception classes.
"""

from __future__ import annotations

import errno
from typing import Any

FILE_NOT_FOUND = "FILE_NOT_FOUND"
FILE_EXISTS = "FILE_EXISTS"
FILE_OPERATION_FAILED = "FILE_OPERATION_FAILED"
PROCESS_NOT_FOUND = "PROCESS_NOT_FOUND"
INVALID_CONFIG = "INVALID_CONFIG"
CONNECT_FAILED = "CONNECT_FAILED"
INTERNAL = "INTERNAL"

_REASONS = {
    errno.ENOTDIR: "not a directory",
    errno.EISDIR: "is a directory",
    errno.ENOTEMPTY: "directory not empty",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.ELOOP: "too many levels of symbolic links",
    errno.ENAMETOOLONG: "file name too long",
    errno.EBUSY: "device or resource busy",
    errno.EXDEV: "cross-device link",
    errno.ETXTBSY: "text file busy",
}


class AgentError(Exception):
    """A failure answered to the client as an `error` frame with a stable code."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}


def invalid(message: str) -> AgentError:
    return AgentError(INVALID_CONFIG, message)


def operation_failed(reason: str, path: str) -> AgentError:
    return AgentError(FILE_OPERATION_FAILED, f"{reason}: {path}", {"path": path, "reason": reason})


def from_oserror(exc: OSError, path: str | None = None) -> AgentError:
    """Name the failure of a file system call the way the API reports it."""
    where = str(exc.filename) if exc.filename is not None else (path or "")
    if exc.errno == errno.ENOENT:
        return AgentError(FILE_NOT_FOUND, f"no such file or directory: {where}", {"path": where})
    if exc.errno == errno.EEXIST:
        return AgentError(FILE_EXISTS, f"already exists: {where}", {"path": where})
    reason = _REASONS.get(exc.errno or 0) or (exc.strerror or "operation failed").lower()
    return operation_failed(reason, where)
