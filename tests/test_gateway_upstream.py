"""The gateway's persistent upstream sessions (gateway/upstream.py), against a real MCP server
run in-process on loopback: shared without mixing, no client header passed on, renewed when
upstream restarts, and a tool call never sent twice unless upstream surely never ran it."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastmcp import Client, Context, FastMCP
from fastmcp.client.logging import LogMessage
from fastmcp.server.dependencies import get_http_headers
from fastmcp.server.middleware import Middleware

from gateway.admins import AdminAccess, Admins
from gateway.server import build_app, build_gate
from gateway.settings import GatewaySettings
from gateway.upstream import UpstreamPool

pytestmark = pytest.mark.anyio
TOKEN = "upstream-test-token-0123456789abcdef"  # noqa: S105 -- a test token


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


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


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    server = Upstream(free_port())
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def pool(upstream: Upstream) -> AsyncIterator[UpstreamPool]:
    pool = UpstreamPool(upstream.url, size=2)
    yield pool
    await pool.aclose()


async def call(pool: UpstreamPool, tag: str) -> Any:
    client = await pool.client()
    async with client:
        result = await client.call_tool_mcp("read_account", {"model": {"tag": tag}})
    assert not result.is_error, result
    return result.structured_content


async def test_calls_share_the_pools_sessions_without_mixing(
    pool: UpstreamPool, upstream: Upstream
) -> None:
    tags = [f"call-{n}" for n in range(40)]
    answers = await asyncio.gather(*(call(pool, tag) for tag in tags))
    assert [a["tag"] for a in answers] == tags  # each call got its own answer
    assert len(upstream.sessions) == 2  # and upstream saw two sessions, not forty
    assert set(pool.sessions()) == upstream.sessions


async def test_upstream_restart_is_survived_and_the_call_runs_once(
    pool: UpstreamPool, upstream: Upstream
) -> None:
    await call(pool, "before")
    before = set(upstream.sessions)
    await upstream.stop()
    upstream.calls.clear()
    upstream.sessions.clear()
    await upstream.start()  # a new process: it knows none of the old sessions
    assert (await call(pool, "after"))["tag"] == "after"
    assert (await call(pool, "again"))["tag"] == "again"
    assert upstream.calls == ["after", "again"]  # the refused call (404) was sent again, once
    assert not before & upstream.sessions


async def test_upstream_down_is_an_error_then_recovers(
    pool: UpstreamPool, upstream: Upstream
) -> None:
    await call(pool, "up")
    await upstream.stop()
    with pytest.raises(Exception):  # noqa: B017 -- whatever the transport raises
        await call(pool, "down")
    await upstream.start()
    assert (await call(pool, "back"))["tag"] == "back"


async def test_a_call_whose_answer_was_lost_is_not_sent_again(
    pool: UpstreamPool, upstream: Upstream
) -> None:
    await call(pool, "first")
    client = await pool.client()
    upstream.fail_next_response = True
    with pytest.raises(Exception):  # noqa: B017 -- the answer is lost, however reported
        await client.call_tool_mcp("read_account", {"model": {"tag": "lost"}})
    assert upstream.calls.count("lost") == 1  # it ran upstream: never repeat it
    assert (await call(pool, "next"))["tag"] == "next"


@pytest.fixture
async def gateway(upstream: Upstream, tmp_path: Path) -> AsyncIterator[str]:
    settings = GatewaySettings(
        upstream_url=upstream.url, state_dir=tmp_path / "state", upstream_sessions=2
    )
    access = AdminAccess(Admins.of([("alice", "alice-password-0123456789")]), b"responder-0123")
    app = build_app(settings, build_gate(settings), TOKEN.encode(), access)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, ws="none", log_level="critical")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}/mcp"
    server.should_exit = True
    await task


async def test_many_client_sessions_share_two_upstream_sessions(
    gateway: str, upstream: Upstream
) -> None:
    async def session(n: int) -> list[str]:
        async with Client(gateway, auth=TOKEN) as client:
            tags = [f"s{n}-{i}" for i in range(3)]
            out = []
            for tag in tags:
                result = await client.call_tool("read_account", {"model": {"tag": tag}})
                out.append(result.structured_content["tag"])
            assert out == tags
            return out

    await asyncio.gather(*(session(n) for n in range(8)))
    assert len(upstream.calls) == 24
    assert len(upstream.sessions) <= 2


async def test_client_headers_and_token_never_reach_upstream(
    gateway: str, upstream: Upstream
) -> None:
    secret = "client-secret-header-value"  # noqa: S105 -- a canary
    async with Client(gateway, auth=TOKEN) as client:
        client.transport.headers["X-Client-Secret"] = secret  # type: ignore[attr-defined]
        await client.call_tool("read_account", {"model": {"tag": "one"}})
    async with Client(gateway, auth=TOKEN) as client:
        await client.call_tool("read_account", {"model": {"tag": "two"}})
    assert len(upstream.headers) == 2
    for seen in upstream.headers:
        text = repr(seen).lower()
        assert TOKEN.lower() not in text and secret not in text
        assert "authorization" not in seen and "x-client-secret" not in seen


async def test_upstream_logs_are_not_relayed_to_a_client(gateway: str) -> None:
    received: list[LogMessage] = []

    async def collect(message: LogMessage) -> None:
        received.append(message)

    async with Client(gateway, auth=TOKEN, log_handler=collect) as client:
        await client.call_tool("read_account", {"model": {"tag": "quiet"}})
    assert not [m for m in received if "upstream log" in str(m.data)]


async def test_the_gateway_survives_an_upstream_restart(gateway: str, upstream: Upstream) -> None:
    async with Client(gateway, auth=TOKEN) as client:
        await client.call_tool("read_account", {"model": {"tag": "before"}})
        await upstream.stop()
        await upstream.start()
        result = await client.call_tool("read_account", {"model": {"tag": "after"}})
        assert result.structured_content["tag"] == "after"


async def test_tools_list_is_answered_from_memory(gateway: str, upstream: Upstream) -> None:
    for _ in range(2):
        async with Client(gateway, auth=TOKEN) as client:
            for _ in range(3):
                assert [t.name for t in await client.list_tools()] == ["read_account"]
    assert upstream.listings == 1


async def test_tools_list_is_fetched_again_once_upstream_restarted(
    gateway: str, upstream: Upstream
) -> None:
    async with Client(gateway, auth=TOKEN) as client:
        assert [t.name for t in await client.list_tools()] == ["read_account"]
        await upstream.stop()
        upstream.extra_tools = ("read_project",)  # a new version, with another tool
        await upstream.start()
        await client.call_tool("read_account", {})  # finds its session gone, renews it
        assert {t.name for t in await client.list_tools()} == {"read_account", "read_project"}
