"""The FastAPI application: routers, error handlers, and the service's start and stop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Protocol

from fastapi import FastAPI

from sandlot import __version__
from sandlot.api.body_limit import BodyLimit
from sandlot.api.deps import Authenticator
from sandlot.api.errors import ERROR_RESPONSES, install_error_handlers
from sandlot.api.ratelimit import RateLimiter
from sandlot.api.routes import (
    events,
    files,
    health,
    keys,
    lifecycle,
    monitoring,
    network,
    processes,
    runtimes,
    sandboxes,
    ssh,
    templates,
    volumes,
)
from sandlot.api.routes.ssh import SshEndpoint
from sandlot.core.service import SandboxService
from sandlot.core.ssh_access import SshAccess
from sandlot.core.supervisor import PRUNE_INTERVAL, Loop, Supervisor
from sandlot.core.tenancy import Tenancy
from sandlot.store.database import Database


class Listener(Protocol):
    """Another front door served beside the API (the SSH gateway): opened once the
    service is up, closed before it goes down."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...


def create_app(
    service: SandboxService,
    db: Database,
    supervisor_interval: float = 1.0,
    metrics_interval: float = 2.0,
    limiter: RateLimiter | None = None,
    listeners: Sequence[Listener] = (),
    ssh_endpoint: SshEndpoint | None = None,
) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Listeners bind first: a port in use then stops the server before it starts
        # (and warms) any sandbox.
        for listener in listeners:
            await listener.start()
        events = asyncio.create_task(service.events.run())
        await service.start()
        supervisor = Supervisor(
            [
                Loop("supervision", supervisor_interval, service.supervision.run),
                Loop("metrics", metrics_interval, _sample(service)),
                Loop("event pruning", PRUNE_INTERVAL, _prune(service)),
            ]
        )
        supervisor.start()
        try:
            yield
        finally:
            await supervisor.close()
            for listener in listeners:
                await listener.close()
            await service.close()
            events.cancel()
            await asyncio.gather(events, return_exceptions=True)

    app = FastAPI(
        title="Sandlot",
        version=__version__,
        description="Self-hosted sandboxes: isolated Linux machines on demand.",
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.authenticator = Authenticator(Tenancy(db), limiter)
    app.state.ssh_access = SshAccess(db)
    app.state.ssh = ssh_endpoint
    install_error_handlers(app)
    app.add_middleware(BodyLimit)
    routers = (
        health,
        sandboxes,
        lifecycle,
        processes,
        files,
        events,
        monitoring,
        keys,
        ssh,
        network,
        runtimes,
        templates,
        volumes,
    )
    for module in routers:
        app.include_router(module.router, responses=ERROR_RESPONSES)
    return app


def _sample(service: SandboxService) -> Callable[[], Awaitable[None]]:
    async def sample() -> None:
        service.readings.sample_metrics()

    return sample


def _prune(service: SandboxService) -> Callable[[], Awaitable[int]]:
    async def prune() -> int:
        return service.events.prune()

    return prune
