"""Builds and runs the gateway: bearer-token auth in front of the policy proxy to qc-mcp."""

from __future__ import annotations

import hmac
import logging
import sys
from typing import Any

import uvicorn
from fastmcp.server import create_proxy
from fastmcp.server.providers.proxy import ProxyClient
from starlette.middleware import Middleware as StarletteMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.accesslog import AccessLog
from gateway.approvals import ApprovalError, ApprovalStore
from gateway.audit import AuditError, AuditLog
from gateway.brokerages import BrokerageError, BrokerageStore
from gateway.inbound import RequestLimits
from gateway.lockdown import Lockdown
from gateway.middleware import Gate, PolicyMiddleware
from gateway.settings import GatewaySettings, SettingsError, read_secret

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
        brokerages=BrokerageStore.load(settings.brokerages_file),
    )


def build_app(settings: GatewaySettings, gate: Gate, token: bytes) -> Any:
    upstream: ProxyClient[Any] = ProxyClient(
        settings.upstream_url,
        mode="legacy",  # qc-mcp is an mcp 1.x server
        forward_incoming_headers=False,  # never pass the client's token on to qc-mcp
    )
    proxy = create_proxy(
        upstream,
        name="qcstack-gateway",
        middleware=[PolicyMiddleware(gate)],
        mask_error_details=True,
        provider_error_strategy="raise",  # qc-mcp down is an error, not an empty tool list
    )

    @proxy.custom_route("/healthz", methods=["GET"])
    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True, "lockdown": gate.lockdown.state().locked})

    guards = [
        StarletteMiddleware(AccessLog),
        StarletteMiddleware(BearerGuard, token=token),  # nothing unauthenticated is read
        StarletteMiddleware(
            RequestLimits,
            path="/mcp",
            max_bytes=settings.max_request_bytes,
            max_depth=settings.max_json_depth,
        ),
    ]
    return proxy.http_app(path="/mcp", middleware=guards)


def main() -> None:
    try:
        settings = GatewaySettings()
        token = read_secret(settings.token_file, "the gateway's bearer token")
        gate = build_gate(settings)
    except (SettingsError, AuditError, ApprovalError, BrokerageError, ValueError) as error:
        sys.exit(f"qcstack gateway: {error}")
    app = build_app(settings, gate, token)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    # uvicorn's access log prints query strings, where clients sometimes put tokens: ours doesn't.
    uvicorn.run(
        app, host=settings.host, port=settings.port, ws="none", log_level="info", access_log=False
    )
