"""A stand-in MCP upstream (qc-mcp's tool names) and the gateway, served on loopback for tests."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import uvicorn
from fastmcp import Context, FastMCP
from fastmcp.server.dependencies import get_http_headers
from fastmcp.server.middleware import Middleware

from gateway.admins import AdminAccess, Admins
from gateway.calls import Gate
from gateway.server import build_app, build_gate
from gateway.settings import GatewaySettings


@dataclass
class Upstream:
    """A stand-in for qc-mcp (its tool names) that records what reached it."""

    port: int
    calls: list[str] = field(default_factory=list)
    sessions: set[str] = field(default_factory=set)
    headers: list[dict[str, str]] = field(default_factory=list)
    server: uvicorn.Server | None = None
    task: asyncio.Task[None] | None = None
    fail_next_response: bool = False
    extra_tools: tuple[str, ...] = ()
    listings: int = 0

    def app(self) -> Any:
        mcp = FastMCP("test-upstream")

        @mcp.tool(name="read_account")
        async def read_account(ctx: Context, model: dict[str, Any] | None = None) -> dict[str, Any]:
            tag = str((model or {}).get("tag", ""))
            self.calls.append(tag)
            self.sessions.add(ctx.session_id)
            self.headers.append(get_http_headers(include_all=True))
            await ctx.info(f"upstream log for {tag}")
            await asyncio.sleep(0.01)  # concurrent calls overlap upstream
            return {"tag": tag, "session": ctx.session_id}

        for name in self.extra_tools:
            mcp.tool(lambda: {"ok": True}, name=name)
        upstream = self

        class CountListings(Middleware):
            async def on_list_tools(self, context: Any, call_next: Any) -> Any:
                upstream.listings += 1
                return await call_next(context)

        mcp.add_middleware(CountListings())
        inner = mcp.http_app(path="/mcp")

        async def app(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http" or not self.fail_next_response:
                await inner(scope, receive, send)
                return
            messages = [await receive()]
            while messages[-1].get("more_body"):
                messages.append(await receive())
            replay = iter(messages)

            async def again() -> Any:
                return next(replay, None) or await receive()

            if b'"tools/call"' not in b"".join(m.get("body", b"") for m in messages):
                await inner(scope, again, send)
                return
            # The call runs upstream; its answer is lost (the connection fails under it).
            self.fail_next_response = False

            async def lose(message: Any) -> None:
                return None

            await inner(scope, again, lose)
            raise RuntimeError("answer lost")

        return _Lifespanned(inner, app)

    async def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        config = uvicorn.Config(self.app(), ws="none", log_level="critical")
        self.server = uvicorn.Server(config)
        self.task = asyncio.create_task(self.server.serve(sockets=[sock]))
        while not self.server.started:
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        assert self.server is not None and self.task is not None
        self.server.should_exit = True
        self.server.force_exit = True
        await self.task

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"


class _Lifespanned:
    """Routes lifespan events to the MCP app (it runs the session manager) and HTTP to `app`."""

    def __init__(self, inner: Any, app: Any) -> None:
        self.inner = inner
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await (self.inner if scope["type"] == "lifespan" else self.app)(scope, receive, send)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def serve_gateway(
    settings: GatewaySettings, token: str, gate: Gate | None = None
) -> AsyncIterator[str]:
    """The gateway's app on a loopback port; yields its MCP URL."""
    access = AdminAccess(Admins.of([("alice", "alice-password-0123456789")]), b"responder-0123")
    app = build_app(settings, gate or build_gate(settings), token.encode(), access)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, ws="none", log_level="critical")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        server.should_exit = True
        await task


MCP_HEADERS = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


async def open_session(
    http: httpx2.AsyncClient, url: str, headers: dict[str, str]
) -> httpx2.Response:
    """Opens an MCP session of the handshake protocol with one raw initialize request."""
    initialize = {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "raw", "version": "0"},
        },
    }
    return await http.post(url, json=initialize, headers=headers)


def gateway_settings(
    upstream: Upstream, state: Path, brokerage_secret: str, **overrides: Any
) -> GatewaySettings:
    """Gateway settings for a test: this upstream, one upstream session, state under `state`,
    and one stored brokerage configuration ("ib") whose password is `brokerage_secret`."""
    state.mkdir(parents=True, exist_ok=True)
    brokerages = state / "brokerages.json"
    brokerages.write_text(json.dumps({"ib": {"id": "IB", "ib-password": brokerage_secret}}))
    return GatewaySettings(
        upstream_url=upstream.url,
        state_dir=state / "state",
        upstream_sessions=1,
        brokerages_file=brokerages,
        **overrides,
    )
