"""The Sandlot Python SDK.

    from sandlot import Sandbox

    with Sandbox.create(template="base") as sbx:
        result = sbx.commands.run("python3 -c 'print(6 * 7)'")
        sbx.files.write("/workspace/app.py", "print('hi')")

Everything public is re-exported here; the underscore modules are internal.
"""

from sandlot.sdk._client import AsyncSandlot, Sandlot
from sandlot.sdk._commands import AsyncCommands, Commands
from sandlot.sdk._config import (
    DEFAULT_API_URL,
    ClientConfig,
    credentials_path,
    load_credentials,
    resolve_config,
    save_credentials,
)
from sandlot.sdk._files import AsyncFiles, Files
from sandlot.sdk._models import (
    CommandResult,
    EntryInfo,
    EntryType,
    Resources,
    ResourceSpec,
    SandboxInfo,
    SandboxStatus,
    SandboxUsage,
    ServerHealth,
)
from sandlot.sdk._sandbox import (
    AsyncSandbox,
    AsyncSandboxCreation,
    AsyncSandboxes,
    Sandbox,
    Sandboxes,
)

__all__ = [
    "DEFAULT_API_URL",
    "AsyncCommands",
    "AsyncFiles",
    "AsyncSandbox",
    "AsyncSandboxCreation",
    "AsyncSandboxes",
    "AsyncSandlot",
    "ClientConfig",
    "CommandResult",
    "Commands",
    "EntryInfo",
    "EntryType",
    "Files",
    "ResourceSpec",
    "Resources",
    "Sandbox",
    "SandboxInfo",
    "SandboxStatus",
    "SandboxUsage",
    "Sandboxes",
    "Sandlot",
    "ServerHealth",
    "credentials_path",
    "load_credentials",
    "resolve_config",
    "save_credentials",
]
