"""Sandlot: self-hosted sandboxes for running untrusted code.

    from sandlot import Sandbox

    with Sandbox.create() as sbx:
        print(sbx.commands.run("echo hello").stdout)

The SDK classes load on first use, so importing `sandlot` (or the stdlib-only agent
that runs inside sandboxes, `sandlot.agent`) does not pull in httpx or pydantic.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from sandlot.errors import (
    AuthenticationError,
    BuildFailedError,
    CommandTimeoutError,
    FileExistsInSandboxError,
    FileNotFoundInSandboxError,
    FileOperationError,
    InternalError,
    InvalidConfigError,
    InvalidStateError,
    NotFoundError,
    PermissionDeniedError,
    ProcessNotFoundError,
    RateLimitedError,
    ResourceExhaustedError,
    SandboxNotFoundError,
    SandboxUnavailableError,
    SandlotError,
    TemplateNotFoundError,
)

if TYPE_CHECKING:
    from sandlot.sdk import (
        AsyncCommandHandle,
        AsyncPtyHandle,
        AsyncSandbox,
        AsyncSandlot,
        CommandHandle,
        CommandResult,
        EntryInfo,
        Event,
        Metrics,
        OutputChunk,
        ProcessInfo,
        PtyHandle,
        Sandbox,
        SandboxInfo,
        Sandlot,
        Usage,
    )

__version__ = "0.1.0"

_SDK_NAMES = frozenset(
    {
        "AsyncCommandHandle",
        "AsyncPtyHandle",
        "AsyncSandbox",
        "AsyncSandlot",
        "CommandHandle",
        "CommandResult",
        "EntryInfo",
        "Event",
        "Metrics",
        "OutputChunk",
        "ProcessInfo",
        "PtyHandle",
        "Sandbox",
        "SandboxInfo",
        "Sandlot",
        "Usage",
    }
)

__all__ = [
    "AsyncCommandHandle",
    "AsyncPtyHandle",
    "AsyncSandbox",
    "AsyncSandlot",
    "AuthenticationError",
    "BuildFailedError",
    "CommandHandle",
    "CommandResult",
    "CommandTimeoutError",
    "EntryInfo",
    "Event",
    "FileExistsInSandboxError",
    "FileNotFoundInSandboxError",
    "FileOperationError",
    "InternalError",
    "InvalidConfigError",
    "InvalidStateError",
    "Metrics",
    "NotFoundError",
    "OutputChunk",
    "PermissionDeniedError",
    "ProcessInfo",
    "ProcessNotFoundError",
    "PtyHandle",
    "RateLimitedError",
    "ResourceExhaustedError",
    "Sandbox",
    "SandboxInfo",
    "SandboxNotFoundError",
    "SandboxUnavailableError",
    "Sandlot",
    "SandlotError",
    "TemplateNotFoundError",
    "Usage",
    "__version__",
]


def __getattr__(name: str) -> Any:
    if name in _SDK_NAMES:
        value = getattr(importlib.import_module("sandlot.sdk"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sandlot' has no attribute {name!r}")
