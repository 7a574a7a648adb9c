"""Builds and runs the gateway: bearer-token auth in front of the policy proxy to qc-mcp."""

from __future__ import annotations

import hmac
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from fastmcp.server.providers.proxy import FastMCPProxy
from starlette.middleware import Middleware as StarletteMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.approvals import ApprovalError, ApprovalStore
from gateway.audit import AuditError, AuditLog
from gateway.lockdown import Lockdown
from gateway.middleware import Gate, PolicyMiddleware
from gateway.settings import GatewaySettings, SettingsError, read_secret
from gateway.upstream import UpstreamPool

OPEN_PATHS = frozenset({"/healthz"})


class BearerGuard:
    """Every HTTP request but the health check needs `Authorization: Bearer <token>`."""

    def __init__(self, app: ASGIApp, token: bytes) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in OPEN_PATHS:
            header = dict(scope["headers"]).get(b"authorization", b"")
            given = header[7:] if header[:7].lower() == b"bearer " else b""
            if not hmac.compare_digest(given, self.token):
                response = JSONResponse(
                    {"error": "unauthorized: send Authorization: Bearer <gateway token>"},
                    status_code=401,
                    headers={"www-authenticate": "Bearer"},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def build_gate(settings: GatewaySettings) -> Gate:
    state = settings.state_dir
    return Gate(
        profile=settings.profile,
        audit=AuditLog(state / "audit.jsonl"),
        approvals=ApprovalStore(state / "approvals", ttl_seconds=settings.approval_wait_seconds),
        lockdown=Lockdown(state / "lockdown.json"),
        held_tools=frozenset(settings.held_tools),
        approval_wait_seconds=settings.approval_wait_seconds,
        limiter=settings.limiter(),
    )


def build_app(settings: GatewaySettings, gate: Gate, token: bytes) -> Any:
    # A few persistent sessions to qc-mcp, shared by every client call; they pass on no
    # header of the client's (its token stays here) and relay nothing back (gateway/upstream.py).
    upstream = UpstreamPool(settings.upstream_url, size=settings.upstream_sessions)

    @asynccontextmanager
    async def close_upstream(server: Any) -> AsyncIterator[None]:
        yield
        await upstream.aclose()

    proxy = FastMCPProxy(
        client_factory=upstream.client,
        lifespan=close_upstream,
        name="qcstack-gateway",
        middleware=[PolicyMiddleware(gate), upstream.tool_list_cache],
        mask_error_details=True,
        provider_error_strategy="raise",  # qc-mcp down is an error, not an empty tool list
    )

    @proxy.custom_route("/healthz", methods=["GET"])
    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True, "lockdown": gate.lockdown.state().locked})

    return proxy.http_app(path="/mcp", middleware=[StarletteMiddleware(BearerGuard, token=token)])


def main() -> None:
    try:
        settings = GatewaySettings()
        token = read_secret(settings.token_file, "the gateway's bearer token")
        gate = build_gate(settings)
    except (SettingsError, AuditError, ApprovalError, ValueError) as error:
        sys.exit(f"qcstack gateway: {error}")
    app = build_app(settings, gate, token)
    uvicorn.run(app, host=settings.host, port=settings.port, ws="none", log_level="info")
