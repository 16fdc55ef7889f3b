"""The composition root: the one place that picks concrete backends and wires them up."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import FastAPI

from sandlot.api.app import create_app
from sandlot.api.ratelimit import RateLimiter
from sandlot.config import Settings
from sandlot.core.capacity import Capacity
from sandlot.core.events import EventBudget, EventBus
from sandlot.core.pool import WarmPool
from sandlot.core.previews import PreviewConfig, Previews
from sandlot.core.quotas import Quota, SnapshotQuota
from sandlot.core.service import SandboxService
from sandlot.core.ssh_access import SshAccess
from sandlot.core.tenancy import Tenancy
from sandlot.edge.front import ClientConnections, FrontProtocol
from sandlot.edge.proxy import PreviewRoutes
from sandlot.edge.ssh import SshGateway
from sandlot.errors import InvalidConfigError, TemplateNotFoundError
from sandlot.host.local import LocalHost
from sandlot.host.volumes import LocalVolumes
from sandlot.network.manager import NetworkConfig, NetworkManager
from sandlot.runtime.base import Runtime
from sandlot.runtime.catalog import describe_runtimes
from sandlot.runtime.multi import MultiRuntime
from sandlot.runtime.oci import OciRuntime, run_root_for
from sandlot.runtime.runsc import RunscRuntime, runsc_version
from sandlot.runtime.volumes import VolumeDisks
from sandlot.store.database import Database, migrate
from sandlot.templates.builder import build_template
from sandlot.templates.recipe import RECIPES
from sandlot.templates.store import Template, TemplateStore

if TYPE_CHECKING:
    from sandlot.api.telemetry import Telemetry

SSH_FAILURES_PER_SECOND = 0.2
SSH_FAILURES_BURST = 10
"""Failed SSH logins an address may make at once, then one every five seconds."""


def make_runtime(settings: Settings) -> Runtime:
    """The default backend and every other one the operator offers, behind one router."""
    names = dict.fromkeys([settings.runtime, *settings.runtimes])
    return MultiRuntime(
        settings.data_dir, [_backend(settings, name) for name in names], settings.runtime
    )


def _backend(settings: Settings, name: str) -> OciRuntime:
    if name == "runsc":
        if runsc_version() is None:
            raise InvalidConfigError(
                "runtime runsc needs gVisor's runsc: run scripts/setup, or "
                "`apt-get install -t bookworm-backports runsc`"
            )
        return RunscRuntime(
            settings.data_dir, network=settings.network_enabled, platform=settings.runsc_platform
        )
    return OciRuntime(
        settings.data_dir,
        binary=settings.oci_binary,
        criu=settings.criu_path,
        user_namespace_owners=settings.user_namespace_owners,
    )


def open_database(settings: Settings) -> Database:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.db_url)
    migrate(db.engine)
    return db


def ensure_admin_key(db: Database, key_file: Path) -> str | None:
    """Create the admin organisation and key on first start; returns the new key, else None."""
    secret = Tenancy(db).ensure_operator()
    if secret is None:
        return None
    key_file.touch(mode=0o600)
    key_file.write_text(secret + "\n")
    key_file.chmod(0o600)
    return secret


@dataclass
class Server:
    settings: Settings
    db: Database
    service: SandboxService
    app: FastAPI
    protocol: Callable[..., asyncio.Protocol]
    """What uvicorn speaks on each connection (`http=`): the API, or a preview relayed."""


def local_host(settings: Settings, runtime: Runtime, network: NetworkManager | None) -> LocalHost:
    """This machine as core's host: the runtime, the network and the volumes' disks."""
    run_root = run_root_for(settings.data_dir)
    disks = VolumeDisks(
        settings.data_dir / "volumes",
        run_root.with_name(f"{run_root.name}.volumes"),
        runtime.uid_offset,
    )
    volumes = LocalVolumes(disks)
    return LocalHost(runtime, network, volumes, settings.agent_connect_timeout)


def build_server(settings: Settings) -> Server:
    db = open_database(settings)
    runtime = make_runtime(settings)
    templates = template_store(settings)
    network = network_manager(settings)
    events = EventBus(
        db,
        budget=EventBudget(
            sandbox_bytes=settings.event_storage_sandbox_mb << 20,
            org_bytes=settings.event_storage_org_mb << 20,
        ),
    )
    host = local_host(settings, runtime, network)
    pool = WarmPool(
        host=host,
        templates=templates,
        uid_offset=runtime.uid_offset,
        # A warm sandbox is handed over by changing its limits, which not every backend can.
        size=settings.warm_pool_size if runtime.capabilities.live_limits else 0,
        template_names=tuple(settings.warm_pool_templates),
    )
    service = SandboxService(
        db=db,
        templates=templates,
        pool=pool,
        events=events,
        capacity=Capacity(settings.data_dir, settings.memory_overcommit),
        host=host,
        exec_timeout=settings.exec_timeout,
        exec_output_limit=settings.exec_output_limit,
        default_quota=Quota(
            settings.org_max_sandboxes, settings.org_max_vcpus, settings.org_max_memory_mb
        ),
        snapshots_root=settings.data_dir / "snapshots",
        pause_mode=settings.pause_mode,
        auto_resume=settings.auto_resume,
        snapshot_quota=SnapshotQuota(
            settings.org_max_snapshots, settings.org_max_snapshot_storage_mb
        ),
        volume_quota_mb=settings.org_max_volume_mb,
        previews=Previews(
            db,
            events,
            PreviewConfig(
                settings.preview_domain,
                settings.preview_scheme,
                settings.preview_port or settings.port,
            ),
        ),
    )
    gateway = ssh_gateway(settings, service, db)
    telemetry = open_telemetry(settings, events)
    app = create_app(
        service,
        db,
        settings.supervisor_interval,
        settings.metrics_interval,
        RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst),
        listeners=[x for x in (gateway, telemetry) if x is not None],
        ssh_endpoint=gateway,
    )
    if telemetry is not None:
        telemetry.instrument(app)
    app.state.runtimes = describe_runtimes(
        runtime.backends,
        network=settings.network_enabled,
        runsc_platform=settings.runsc_platform,
        oci_binary=settings.oci_binary,
        criu=settings.criu_path,
    )
    routes = PreviewRoutes(service, settings.preview_domain)
    return Server(settings, db, service, app, partial(FrontProtocol, routes, ClientConnections()))


def network_manager(settings: Settings) -> NetworkManager | None:
    if not settings.network_enabled:
        return None
    return NetworkManager(
        NetworkConfig(
            run_key=run_root_for(settings.data_dir).name,
            bridge=settings.network_bridge,
            pool=settings.network_pool,
            dns_port=settings.dns_port,
            upstreams=settings.dns_upstreams,
            static_hosts=settings.dns_hosts,
        )
    )


def open_telemetry(settings: Settings, events: EventBus) -> Telemetry | None:
    """OpenTelemetry export when configured; its packages are imported only then."""
    if settings.otel_endpoint is None:
        return None
    try:
        from sandlot.api.telemetry import Telemetry
    except ImportError as exc:
        raise InvalidConfigError(
            f"otel_endpoint is set but OpenTelemetry is not installed ({exc}): "
            "pip install 'sandlot[otel]'"
        ) from None
    return Telemetry(settings.otel_endpoint, events)


def ssh_gateway(settings: Settings, service: SandboxService, db: Database) -> SshGateway | None:
    if not settings.ssh_port:
        return None
    return SshGateway(
        service,
        SshAccess(db),
        host=settings.ssh_host or settings.host,
        port=settings.ssh_port,
        data_dir=settings.data_dir,
        limiter=RateLimiter(SSH_FAILURES_PER_SECOND, SSH_FAILURES_BURST),
    )


def template_store(settings: Settings) -> TemplateStore:
    return TemplateStore(settings.templates_path)


def build_known_template(
    settings: Settings, name: str, on_progress: Callable[[str], None], *, force: bool = False
) -> Template:
    """Build one of the recipes Sandlot ships, shifted for the configured runtime."""
    recipe = RECIPES.get(name)
    if recipe is None:
        raise TemplateNotFoundError(
            f"no recipe named {name!r}; known recipes: {', '.join(sorted(RECIPES))}",
            details={"template": name},
        )
    runtime = make_runtime(settings)
    return build_template(
        recipe,
        template_store(settings),
        uid_offset=runtime.uid_offset,
        on_progress=on_progress,
        force=force,
    )
