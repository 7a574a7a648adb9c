"""The gateway's fast lane (gateway/fastlane.py), served on loopback before a real MCP upstream:
the same rules as FastMCP's path, answers kept apart, secrets scrubbed, sessions capped."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from fastmcp import Client

from gateway import fastlane
from gateway.calls import CallGate, Refused
from gateway.middleware import PolicyMiddleware
from gateway.server import build_gate
from gateway.settings import GatewaySettings
from tests.mcp_upstream import (
    MCP_HEADERS,
    Upstream,
    gateway_settings,
    open_session,
    serve_gateway,
)

pytestmark = pytest.mark.anyio
TOKEN = "fastlane-test-token-0123456789abcdef"  # noqa: S105 -- a test token
BROKERAGE_SECRET = "fastlane-canary-brokerage-password"  # noqa: S105 -- a canary
HEADERS = {"authorization": f"Bearer {TOKEN}", **MCP_HEADERS}


@pytest.fixture
def upstream_tools() -> tuple[str, ...]:
    return ("create_live_algorithm", "frobnicate")


@pytest.fixture
def settings(upstream: Upstream, tmp_path: Path) -> GatewaySettings:
    return gateway_settings(
        upstream,
        tmp_path,
        BROKERAGE_SECRET,
        profile="live",
        approval_wait_seconds=30,
        max_sessions=3,
    )


@pytest.fixture
async def gateway(settings: GatewaySettings, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[str]:
    async def not_here(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("this call was meant for the fast lane, not FastMCP's path")

    monkeypatch.setattr(PolicyMiddleware, "on_call_tool", not_here)
    async with serve_gateway(settings, TOKEN) as url:
        yield url


def audit_events(settings: GatewaySettings) -> list[tuple[str, str]]:
    lines = (settings.state_dir / "audit.jsonl").read_text().splitlines()
    return [(entry["tool"], entry["event"]) for entry in map(json.loads, lines)]


async def test_tool_calls_are_decided_and_audited_in_the_fast_lane(
    gateway: str, settings: GatewaySettings
) -> None:
    async with Client(gateway, auth=TOKEN, mode="legacy") as client:
        result = await client.call_tool("read_account", {"model": {"tag": "fast"}})
    assert result.structured_content is not None
    assert result.structured_content["tag"] == "fast"
    assert audit_events(settings) == [("read_account", "allow"), ("read_account", "completed")]


@pytest.mark.parametrize(
    ("tool", "arguments", "reason"),
    [
        ("frobnicate", {}, "not classified"),
        (
            "create_live_algorithm",
            {"model": {"brokerage": {"id": "IB", "ib-password": "typed-in-by-the-model"}}},
            "come from the gateway's store",
        ),
    ],
)
async def test_a_call_the_rules_forbid_is_refused_in_the_fast_lane(
    gateway: str,
    settings: GatewaySettings,
    upstream: Upstream,
    tool: str,
    arguments: dict[str, Any],
    reason: str,
) -> None:
    async with Client(gateway, auth=TOKEN, mode="legacy") as client:
        result = await client.call_tool(tool, arguments, raise_on_error=False)
    assert result.is_error
    text = result.content[0].text  # type: ignore[union-attr]
    assert text.startswith("qcstack gateway: ") and reason in text
    assert audit_events(settings) == [(tool, "deny")]
    assert not upstream.calls


async def test_clients_reusing_request_ids_on_one_upstream_session_get_their_own_answers(
    gateway: str, upstream: Upstream
) -> None:
    async def session(n: int) -> list[str]:
        # Each client numbers its requests alike.
        async with Client(gateway, auth=TOKEN, mode="legacy") as client:
            answers = await asyncio.gather(
                *(
                    client.call_tool("read_account", {"model": {"tag": f"{n}-{i}"}})
                    for i in range(4)
                )
            )
        return [answer.structured_content["tag"] for answer in answers]  # type: ignore[index]

    results = await asyncio.gather(*(session(n) for n in range(3)))
    assert results == [[f"{n}-{i}" for i in range(4)] for n in range(3)]
    assert len(upstream.sessions) == 1


async def test_a_stored_brokerage_secret_never_comes_back_in_an_answer(
    gateway: str, settings: GatewaySettings
) -> None:
    async with Client(gateway, auth=TOKEN, mode="legacy") as client:
        result = await client.call_tool("read_account", {"model": {"tag": BROKERAGE_SECRET}})
    assert BROKERAGE_SECRET not in json.dumps(result.structured_content)
    assert BROKERAGE_SECRET not in str(result.content)
    assert BROKERAGE_SECRET not in (settings.state_dir / "audit.jsonl").read_text()


async def test_a_listing_shows_only_what_the_profile_allows(
    gateway: str, settings: GatewaySettings
) -> None:
    async with Client(gateway, auth=TOKEN, mode="legacy") as client:
        names = {tool.name for tool in await client.list_tools()}
    assert names == {"read_account", "create_live_algorithm"}  # frobnicate: unclassified


async def test_a_request_on_a_session_the_gateway_never_opened_is_refused(gateway: str) -> None:
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "read_account"}}
    async with httpx2.AsyncClient() as http:
        answer = await http.post(
            gateway, json=call, headers={**HEADERS, "mcp-session-id": "0123456789abcdef"}
        )
    assert answer.status_code == 404


async def test_opening_more_sessions_than_the_cap_is_refused(
    gateway: str, settings: GatewaySettings
) -> None:
    async with httpx2.AsyncClient() as http:
        opened = [await open_session(http, gateway, HEADERS) for _ in range(settings.max_sessions)]
        assert [answer.status_code for answer in opened] == [200] * settings.max_sessions
        one_more = await open_session(http, gateway, HEADERS)
        assert one_more.status_code == 503
        session = opened[0].headers["mcp-session-id"]
        closed = await http.delete(gateway, headers={**HEADERS, "mcp-session-id": session})
        assert closed.status_code == 200
        assert (await open_session(http, gateway, HEADERS)).status_code == 200  # room again


async def test_a_held_call_keeps_its_stream_alive_until_a_person_decides(
    gateway: str, settings: GatewaySettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fastlane, "START_WITHIN_SECONDS", 0.05)
    monkeypatch.setattr(fastlane, "KEEPALIVE_SECONDS", 0.05)
    gate = build_gate(settings)
    async with httpx2.AsyncClient() as http:
        session = (await open_session(http, gateway, HEADERS)).headers["mcp-session-id"]
        headers = {**HEADERS, "mcp-session-id": session}
        await http.post(
            gateway, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers
        )
        deploy = {"name": "create_live_algorithm", "arguments": {"model": {"projectId": 1}}}
        call = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": deploy}
        async with http.stream("POST", gateway, json=call, headers=headers) as stream:
            lines = stream.aiter_lines()
            assert await anext(lines) == ": waiting"
            (held,) = gate.approvals.all()
            gate.approvals.deny(held.id, "alice")
            answer = [line async for line in lines if line.startswith("data: ")]
    (message,) = [json.loads(line[6:]) for line in answer]
    assert message["id"] == 7 and message["result"]["isError"]
    assert "denied" in message["result"]["content"][0]["text"]
    assert ("create_live_algorithm", "waiting") in audit_events(settings)


async def raw_call(http: httpx2.AsyncClient, gateway: str, tag: str) -> httpx2.Response:
    session = (await open_session(http, gateway, HEADERS)).headers["mcp-session-id"]
    headers = {**HEADERS, "mcp-session-id": session}
    await http.post(
        gateway, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers
    )
    read = {"name": "read_account", "arguments": {"model": {"tag": tag}}}
    call = {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": read}
    return await http.post(gateway, json=call, headers=headers)


async def test_a_quick_answer_is_one_json_response_so_the_client_keeps_its_connection(
    gateway: str,
) -> None:
    async with httpx2.AsyncClient() as http:
        answers = [await raw_call(http, gateway, f"json-{n}") for n in range(2)]
    for n, answer in enumerate(answers):
        assert answer.headers["content-type"] == "application/json"
        assert int(answer.headers["content-length"]) == len(answer.content)
        message = answer.json()
        assert message["id"] == 3
        assert message["result"]["structuredContent"]["tag"] == f"json-{n}"


async def test_an_outcome_the_audit_log_cannot_take_does_not_take_the_answer_away(
    gateway: str, settings: GatewaySettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unwritable(self: CallGate, *args: Any, **kwargs: Any) -> None:
        raise Refused("qcstack gateway: audit log unavailable, call refused (disk full)")

    monkeypatch.setattr(CallGate, "completed", unwritable)
    async with httpx2.AsyncClient() as http:
        answer = await raw_call(http, gateway, "ran-upstream")
    assert answer.json()["result"]["structuredContent"]["tag"] == "ran-upstream"
    assert audit_events(settings) == [("read_account", "allow")]
