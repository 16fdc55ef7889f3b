"""Server settings: defaults < `sandlot.toml` < `SANDLOT_*` environment < CLI flags."""

from __future__ import annotations

import os
from ipaddress import IPv4Network
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

DEFAULT_DATA_DIR = Path("/var/lib/sandlot")


def _toml_file() -> Path:
    """`SANDLOT_CONFIG` names the file; otherwise `sandlot.toml` in the data directory."""
    explicit = os.environ.get("SANDLOT_CONFIG")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("SANDLOT_DATA_DIR", DEFAULT_DATA_DIR)) / "sandlot.toml"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SANDLOT_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 7766
    data_dir: Path = DEFAULT_DATA_DIR
    template_dir: Path | None = Field(
        default=None, description="Where templates live; defaults to DATA_DIR/templates."
    )
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; defaults to SQLite in the data directory."
    )
    runtime: Literal["oci", "runsc"] = Field(
        default="oci",
        description='"oci": containers under runc; "runsc": the same under gVisor\'s '
        "user-space kernel, for untrusted code.",
    )
    runtimes: list[Literal["oci", "runsc"]] = Field(
        default_factory=list,
        description="Other backends a sandbox may ask for at create (`runtime`), besides "
        "`runtime`, the default; empty offers the default alone.",
    )
    oci_binary: str = "runc"
    user_namespace_owners: bool = Field(
        default=False,
        description="Make each runc sandbox's user namespace owned by a host uid of its own, "
        "so per-user kernel allowances (inotify, message queues, pending signals) are counted "
        "per sandbox. Needs root to hold CAP_SYS_RESOURCE; without it the setting is ignored.",
    )
    runsc_platform: Literal["systrap", "ptrace", "kvm"] = Field(
        default="systrap", description="How gVisor intercepts system calls (runsc --platform)."
    )
    default_template: str = "base"
    build_default_template: bool = True
    exec_timeout: float = 60.0
    exec_output_limit: int = Field(
        default=64 * 1024 * 1024, ge=1024, description="Bytes of each output kept per command."
    )
    agent_connect_timeout: float = 10.0
    memory_overcommit: float = Field(
        default=1.0, description="Sum of sandbox memory limits allowed, as a multiple of host RAM."
    )
    supervisor_interval: float = 1.0
    org_max_sandboxes: int = Field(default=100, ge=1, description="Default live sandboxes per org.")
    org_max_vcpus: int = Field(default=64, ge=1, description="Default vCPUs per org, summed.")
    org_max_memory_mb: int = Field(
        default=64 * 1024, ge=128, description="Default MiB of memory per org, summed."
    )
    org_max_snapshots: int = Field(default=100, ge=1, description="Snapshots per org.")
    org_max_snapshot_storage_mb: int = Field(
        default=100 * 1024, ge=1, description="MiB of snapshot storage per org."
    )
    org_max_volume_mb: int = Field(
        default=200 * 1024, ge=1, description="MiB of workspace volumes per org, summed sizes."
    )
    event_storage_sandbox_mb: int = Field(
        default=64, ge=1, description="MiB of stored events (logs included) kept per sandbox."
    )
    event_storage_org_mb: int = Field(
        default=1024, ge=1, description="MiB of stored events kept per organisation."
    )
    rate_limit_per_second: float = Field(
        default=50.0, ge=0, description="Requests a second per API key; 0 turns limits off."
    )
    rate_limit_burst: int = Field(default=100, ge=0, description="Requests a key may burst.")
    metrics_interval: float = Field(
        default=2.0, gt=0, description="Seconds between samples of every sandbox's resource use."
    )
    warm_pool_size: int = Field(
        default=2, ge=0, description="Started sandboxes kept ready per pooled template; 0 disables."
    )
    warm_pool_templates: list[str] = Field(
        default_factory=lambda: ["base"], description="Templates to keep warm sandboxes of."
    )
    pause_mode: Literal["auto", "freeze"] = Field(
        default="auto",
        description='"auto" checkpoints paused sandboxes to disk with CRIU where it works '
        'and freezes them in memory elsewhere; "freeze" always freezes.',
    )
    auto_resume: bool = Field(
        default=True,
        description="Resume a paused sandbox when a call needs it running; off answers "
        "INVALID_STATE instead.",
    )
    criu_path: str | None = Field(
        default=None, description="CRIU binary; default: Sandlot's own build, then PATH."
    )
    network_enabled: bool = Field(
        default=True, description="Give sandboxes a network; off leaves them loopback only."
    )
    network_bridge: str = Field(
        default="sandlot0", max_length=15, description="The bridge sandboxes' veths join."
    )
    network_pool: IPv4Network = Field(
        default=IPv4Network("10.88.0.0/16"),
        description="Private addresses for sandboxes; the first is the bridge's (gateway).",
    )
    dns_port: int = Field(
        default=0, ge=0, le=65535, description="The resolver's port on the gateway; 0 picks one."
    )
    dns_upstreams: list[str] | None = Field(
        default=None,
        description="Resolvers allowed names are forwarded to (`ip` or `ip#port`); "
        "defaults to the host's /etc/resolv.conf.",
    )
    dns_hosts: dict[str, str] = Field(
        default_factory=dict,
        description="A static zone, name -> IPv4 address, answered before asking upstream.",
    )
    preview_domain: str = Field(
        default="sandboxes.localhost",
        description="Preview URLs are `{port}-{sandbox_id}.` this domain.",
    )
    preview_scheme: str = Field(default="http", pattern="^https?$")
    preview_port: int | None = Field(
        default=None, description="Port in preview URLs; defaults to the API's `port`."
    )
    ssh_port: int = Field(
        default=2222, ge=0, le=65535, description="The SSH gateway's port; 0 turns SSH off."
    )
    ssh_host: str | None = Field(
        default=None, description="Address the SSH gateway listens on; defaults to `host`."
    )
    otel_endpoint: str | None = Field(
        default=None,
        pattern="^https?://",
        description="OTLP/HTTP collector (e.g. http://127.0.0.1:4318) to send events (as "
        "logs) and API request traces to; unset turns OpenTelemetry off.",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            TomlConfigSettingsSource(settings_cls, toml_file=_toml_file()),
        )

    @property
    def templates_path(self) -> Path:
        return self.template_dir or self.data_dir / "templates"

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'sandlot.db'}"
