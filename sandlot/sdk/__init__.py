"""The Sandlot Python SDK.

    from sandlot import Sandbox

    with Sandbox.create(template="base") as sbx:
        result = sbx.commands.run("python3 -c 'print(6 * 7)'")
        sbx.files.write("/workspace/app.py", "print('hi')")
        server = sbx.commands.run("python3 -m http.server", background=True)
        for chunk in server.stream(): ...

Everything public is re-exported here; the underscore modules are internal.
"""

from sandlot.sdk._admin import KeyInfo, NewKey, OrgInfo, Quotas
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
from sandlot.sdk._event_stream import AsyncEventStream, EventStream
from sandlot.sdk._files import AsyncFiles, Files
from sandlot.sdk._http import RetryPolicy
from sandlot.sdk._lifecycle import AsyncSnapshots, PatchInfo, SnapshotInfo, Snapshots
from sandlot.sdk._listener import AsyncEventCallback, EventCallback
from sandlot.sdk._models import (
    CommandResult,
    EntryInfo,
    EntryType,
    Event,
    Metrics,
    OutputChunk,
    ProcessInfo,
    ProcessStatus,
    Resources,
    ResourceSpec,
    RuntimeInfo,
    SandboxInfo,
    SandboxStatus,
    SandboxUsage,
    SandboxUsageRecord,
    ServerHealth,
    StreamName,
    Usage,
    UsageTotals,
)
from sandlot.sdk._network import AsyncPorts, Port, Ports
from sandlot.sdk._process import AsyncCommandHandle, AsyncPtyHandle, CommandHandle, PtyHandle
from sandlot.sdk._pty import AsyncPty, Pty
from sandlot.sdk._sandbox import (
    AsyncSandbox,
    AsyncSandboxCreation,
    AsyncSandboxes,
    Sandbox,
    Sandboxes,
)
from sandlot.sdk._ssh import AsyncSshKeys, SshInfo, SshKeyInfo, SshKeys
from sandlot.sdk._templates import AsyncTemplates, BuildInfo, TemplateInfo, Templates

__all__ = [
    "DEFAULT_API_URL",
    "AsyncCommandHandle",
    "AsyncCommands",
    "AsyncEventCallback",
    "AsyncEventStream",
    "AsyncFiles",
    "AsyncPorts",
    "AsyncPty",
    "AsyncPtyHandle",
    "AsyncSandbox",
    "AsyncSandboxCreation",
    "AsyncSandboxes",
    "AsyncSandlot",
    "AsyncSnapshots",
    "AsyncSshKeys",
    "AsyncTemplates",
    "BuildInfo",
    "ClientConfig",
    "CommandHandle",
    "CommandResult",
    "Commands",
    "EntryInfo",
    "EntryType",
    "Event",
    "EventCallback",
    "EventStream",
    "Files",
    "KeyInfo",
    "Metrics",
    "NewKey",
    "OrgInfo",
    "OutputChunk",
    "PatchInfo",
    "Port",
    "Ports",
    "ProcessInfo",
    "ProcessStatus",
    "Pty",
    "PtyHandle",
    "Quotas",
    "ResourceSpec",
    "Resources",
    "RetryPolicy",
    "RuntimeInfo",
    "Sandbox",
    "SandboxInfo",
    "SandboxStatus",
    "SandboxUsage",
    "SandboxUsageRecord",
    "Sandboxes",
    "Sandlot",
    "ServerHealth",
    "SnapshotInfo",
    "Snapshots",
    "SshInfo",
    "SshKeyInfo",
    "SshKeys",
    "StreamName",
    "TemplateInfo",
    "Templates",
    "Usage",
    "UsageTotals",
    "credentials_path",
    "load_credentials",
    "resolve_config",
    "save_credentials",
]
