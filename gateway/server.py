"""Builds and runs the gateway: bearer-token auth in front of the policy proxy to qc-mcp, and the
admin pages and API under /admin with credentials of their own."""

from __future__ import annotations

import hmac
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

from fastmcp import Client
from fastmcp.server.providers.proxy import FastMCPProxy
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.accesslog import AccessLog
from gateway.admin.app import Admin, build_admin_app
from gateway.admin.sessions import Sessions
from gateway.admin.statistics import ListBacktestsStatistics, StatisticsProvider, ToolCaller
from gateway.admins import AdminAccess, load_admin_access
from gateway.approvals import ApprovalError, ApprovalStore
from gateway.audit import AuditError, AuditLog
from gateway.brokerages import BrokerageError, BrokerageStore
from gateway.calls import CallGate, Gate
from gateway.fastlane import FastLane
from gateway.inbound import RequestLimits
from gateway.lockdown import Lockdown
from gateway.mcpsessions import MCPSessions
from gateway.middleware import PolicyMiddleware, text_of
from gateway.settings import GatewaySettings, SettingsError, read_secret
from gateway.tracing import Tracing
from gateway.upstream import UpstreamPool
from servicebase.serving import background_logging, serve

MCP_PATH = "/mcp"
OPEN_PATHS = frozenset({"/healthz"})
ADMIN_PREFIX = "/admin"
"""The admin app's own paths: it checks admin credentials, and never the bearer token."""


def is_admin_path(path: str) -> bool:
    return path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/")


class BearerGuard:
    """Every HTTP request but the health check and the admin app needs `Authorization: Bearer
    <token>`."""

    def __init__(self, app: ASGIApp, token: bytes) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and path not in OPEN_PATHS and not is_admin_path(path):
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


def upstream_tool_caller(client_factory: Callable[[], Awaitable[Client[Any]]]) -> ToolCaller:
    """Calls a qc-mcp tool outside the policy, on a client from `client_factory` (the gateway's
    UpstreamPool.client): the approval page asks for reads only (list_backtests), on an admin's
    behalf."""

    async def call_tool(name: str, arguments: dict[str, Any]) -> Mapping[str, Any]:
        async with await client_factory() as client:
            result = await client.call_tool(name, arguments, raise_on_error=False)
        text = text_of(result)
        if result.is_error:
            raise LookupError(f"{name} failed: {text[:200]}")
        if isinstance(result.structured_content, Mapping):
            return result.structured_content
        try:
            answer = json.loads(text)
        except ValueError:
            raise LookupError(f"{name} answered no JSON object") from None
        if not isinstance(answer, Mapping):
            raise LookupError(f"{name} answered no JSON object")
        return answer

    return call_tool


def build_app(
    settings: GatewaySettings,
    gate: Gate,
    token: bytes,
    access: AdminAccess,
    statistics: StatisticsProvider | None = None,
    tracing: Tracing | None = None,
) -> Any:
    """The gateway's ASGI app. statistics: what shows a project's latest backtest on the
    approval page (gateway.admin.statistics); by default qc-mcp's list_backtests. tracing:
    where its spans go (gateway.tracing), for the dropped-span count on /healthz."""
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
        dropped = tracing.dropped if tracing is not None else 0
        return JSONResponse(
            {"ok": True, "lockdown": gate.lockdown.state().locked, "spans_dropped": dropped}
        )

    app = proxy.http_app(path=MCP_PATH, session_idle_timeout=settings.session_idle_seconds)
    sessions = MCPSessions(app, MCP_PATH)
    sessions.cap(app, settings.max_sessions)
    admin = Admin(
        gate=gate,
        access=access,
        sessions=Sessions(settings.admin_session_seconds),
        statistics=statistics or ListBacktestsStatistics(upstream_tool_caller(upstream.client)),
    )
    app.router.routes.append(Mount(ADMIN_PREFIX, build_admin_app(admin, settings.admin_hosts)))
    # The checks wrap FastMCP's whole app, in this order, outside Starlette's and FastMCP's own
    # layers: a call the fast lane answers has no use for those (they cost it 0.1 ms).
    lane = FastLane(
        app, path=MCP_PATH, calls=CallGate(gate), upstream=upstream, session_open=sessions.is_open
    )
    limits = RequestLimits(
        lane, path=MCP_PATH, max_bytes=settings.max_request_bytes, max_depth=settings.max_json_depth
    )
    return AccessLog(BearerGuard(limits, token=token))  # nothing unauthenticated is read


def main() -> None:
    try:
        settings = GatewaySettings()
        token = read_secret(settings.token_file, "the gateway's bearer token")
        access = load_admin_access(settings, token)
        gate = build_gate(settings)
    except (SettingsError, AuditError, ApprovalError, BrokerageError, ValueError) as error:
        sys.exit(f"qcstack gateway: {error}")
    with background_logging():
        tracing = Tracing.start(settings.otel_endpoint, capacity=settings.otel_queue_spans)
        app = build_app(settings, gate, token, access, tracing=tracing)
        try:
            serve(app, settings.host, settings.port)
        finally:
            tracing.shutdown()
