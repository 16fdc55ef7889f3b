"""Every failure leaves the API as `{"error": {code, message, retryable, details}}`."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException

from sandlot.api.schemas import ErrorEnvelope
from sandlot.core.incidents import internal_error
from sandlot.errors import (
    InvalidConfigError,
    NotFoundError,
    SandlotError,
    StoreUnavailableError,
)

log = logging.getLogger(__name__)

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": ErrorEnvelope, "description": "The request cannot be served as sent."},
    "5XX": {"model": ErrorEnvelope, "description": "The server or a sandbox failed."},
}
"""Documented on every route, so clients and schema checkers know every failure's shape
(and FastAPI drops its default 422, which Sandlot never answers: bad input is a 400)."""


def error_response(err: SandlotError) -> JSONResponse:
    headers = {}
    if "retryAfter" in err.details:
        headers["Retry-After"] = str(err.details["retryAfter"])
    return JSONResponse({"error": err.to_dict()}, status_code=err.status, headers=headers)


def _field_name(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(SandlotError)
    async def _sandlot(_request: Request, err: SandlotError) -> JSONResponse:
        return error_response(err)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, err: RequestValidationError) -> JSONResponse:
        problems = [
            {
                "field": _field_name(tuple(e["loc"])),
                "message": e["msg"].removeprefix("Value error, "),
            }
            for e in err.errors()
        ]
        first = problems[0] if problems else {"field": "body", "message": "invalid request"}
        message = f"{first['field']}: {first['message']}"
        return error_response(
            InvalidConfigError(message, details={"field": first["field"], "errors": problems})
        )

    @app.exception_handler(HTTPException)
    async def _http(_request: Request, err: HTTPException) -> JSONResponse:
        if err.status_code == 404:
            return error_response(_NoRoute(f"no such route: {err.detail}"))
        return error_response(InvalidConfigError(str(err.detail)))

    @app.exception_handler(OperationalError)
    async def _store(_request: Request, err: OperationalError) -> JSONResponse:
        # The driver's own words ("database is locked", "disk is full") say what to fix;
        # the statement and its parameters stay in the log.
        log.warning("the store refused a request: %s", err)
        return error_response(
            StoreUnavailableError(f"the server's store refused the change: {err.orig}; retry")
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, err: Exception) -> JSONResponse:
        return error_response(internal_error(err, f"{request.method} {request.url.path}"))


class _NoRoute(NotFoundError):
    code = "NOT_FOUND"
