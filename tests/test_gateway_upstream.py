"""The gateway's persistent upstream sessions (gateway/upstream.py), against a real MCP server
run in-process on loopback: shared without mixing, no client header passed on, renewed when
upstream restarts, and a tool call never sent twice unless upstream surely never ran it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client
from fastmcp.client.logging import LogMessage

from gateway.settings import GatewaySettings
from gateway.upstream import UpstreamPool
from tests.mcp_upstream import Upstream, serve_gateway

pytestmark = pytest.mark.anyio
TOKEN = "upstream-test-token-0123456789abcdef"  # noqa: S105 -- a test token


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
    async with serve_gateway(settings, TOKEN) as url:
        yield url


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
