"""Request dependencies: who is calling, and the service they call."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, FastAPI, Header, Request, WebSocket

from sandlot.api.ratelimit import RateLimiter
from sandlot.core.service import SandboxService
from sandlot.core.tenancy import Tenancy
from sandlot.errors import AuthenticationError, PermissionDeniedError

KEY_CACHE_SECONDS = 5.0


@dataclass(frozen=True)
class Principal:
    org_id: str
    key_id: str
    scopes: tuple[str, ...]


class Authenticator:
    """Looks keys up in the store, caching hits briefly.

    A revoked key therefore stops working within KEY_CACHE_SECONDS.
    """

    def __init__(self, tenancy: Tenancy, limiter: RateLimiter | None = None) -> None:
        self.tenancy = tenancy
        self.limiter = limiter or RateLimiter(0, 0)
        self._cache: dict[str, tuple[float, Principal]] = {}
        self._operator: str | None = None

    def authenticate(self, secret: str | None) -> Principal:
        if not secret:
            raise AuthenticationError(
                "missing API key: send it as `X-API-Key: KEY` or `Authorization: Bearer KEY`"
            )
        now = time.monotonic()
        cached = self._cache.get(secret)
        if cached is not None and cached[0] > now:
            principal = cached[1]
        else:
            key = self.tenancy.key_for(secret)
            if key is None:
                raise AuthenticationError("invalid or revoked API key")
            principal = Principal(key.org_id, key.id, key.scopes)
            self._cache[secret] = (now + KEY_CACHE_SECONDS, principal)
        self.limiter.check(principal.key_id)
        return principal

    def operator_org_id(self) -> str | None:
        if self._operator is None:
            self._operator = self.tenancy.operator_org_id()
        return self._operator

    def forget(self, key_id: str) -> None:
        """Drop a revoked key from the cache so it stops working at once."""
        self._cache = {k: v for k, v in self._cache.items() if v[1].key_id != key_id}


def _secret(x_api_key: str | None, authorization: str | None) -> str | None:
    if x_api_key:
        return x_api_key
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return None


def principal_of(app: FastAPI, x_api_key: str | None, authorization: str | None) -> Principal:
    auth: Authenticator = app.state.authenticator
    return auth.authenticate(_secret(x_api_key, authorization))


def principal(
    request: Request,
    x_api_key: Annotated[str | None, Header(description="API key")] = None,
    authorization: Annotated[str | None, Header(description="`Bearer KEY`")] = None,
) -> Principal:
    return principal_of(request.app, x_api_key, authorization)


def check_scope(who: Principal, scope: str) -> Principal:
    if scope not in who.scopes and "admin" not in who.scopes:
        raise PermissionDeniedError(f"this API key lacks the {scope!r} scope")
    return who


def requires(scope: str) -> object:
    def check(who: Annotated[Principal, Depends(principal)]) -> Principal:
        return check_scope(who, scope)

    return Depends(check)


def websocket_principal(websocket: WebSocket, scope: str) -> Principal:
    """The caller of a WebSocket route, which may also pass its key as `?apiKey=`
    (browsers cannot set headers on a WebSocket)."""
    who = principal_of(
        websocket.app,
        websocket.headers.get("x-api-key") or websocket.query_params.get("apiKey"),
        websocket.headers.get("authorization"),
    )
    return check_scope(who, scope)


def operator(request: Request, who: Annotated[Principal, Depends(principal)]) -> Principal:
    """An admin key of the operator organisation: the only one that may see or change
    other organisations (create tenants and keys, read every sandbox's metrics)."""
    auth: Authenticator = request.app.state.authenticator
    if "admin" not in who.scopes or who.org_id != auth.operator_org_id():
        raise PermissionDeniedError(
            "this needs an admin key of the operator organisation (the one `sandlot serve` made)"
        )
    return who


def service(request: Request) -> SandboxService:
    svc: SandboxService = request.app.state.service
    return svc


Reader = Annotated[Principal, requires("sandboxes:read")]
Writer = Annotated[Principal, requires("sandboxes:write")]
Service = Annotated[SandboxService, Depends(service)]
Operator = Annotated[Principal, Depends(operator)]
