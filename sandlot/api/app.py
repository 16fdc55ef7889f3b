"""The FastAPI application: routers, error handlers, and the service's start and stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

from sandlot import __version__
from sandlot.api.deps import Authenticator
from sandlot.api.errors import install_error_handlers
from sandlot.api.routes import files, health, processes, sandboxes
from sandlot.core.service import SandboxService
from sandlot.store.database import Database

log = logging.getLogger(__name__)


def create_app(service: SandboxService, db: Database, supervisor_interval: float = 1.0) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        task = asyncio.create_task(_supervise(service, supervisor_interval))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await service.close()

    app = FastAPI(
        title="Sandlot",
        version=__version__,
        description="Self-hosted sandboxes: isolated Linux machines on demand.",
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.authenticator = Authenticator(db)
    install_error_handlers(app)
    for module in (health, sandboxes, processes, files):
        app.include_router(module.router)
    return app


async def _supervise(service: SandboxService, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await service.supervise_once()
        except Exception:
            log.exception("supervisor pass failed; retrying next tick")
