"""The gateway's request checks: size, media type, nesting and JSON-RPC shape, before parsing."""

from __future__ import annotations

import json
from typing import Any

import httpx2 as httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.inbound import RequestLimits, nesting_depth

pytestmark = pytest.mark.anyio
MAX_BYTES = 4096
MAX_DEPTH = 8
GOOD = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def echo(scope: Any, receive: Any, send: Any) -> None:
    """The app behind the guard: answers 200 with the body it was given."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def client() -> httpx.AsyncClient:
    app = RequestLimits(echo, path="/mcp", max_bytes=MAX_BYTES, max_depth=MAX_DEPTH)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway")


async def post(body: bytes, content_type: str = "application/json") -> httpx.Response:
    async with client() as http:
        return await http.post("/mcp", content=body, headers={"content-type": content_type})


def nested(depth: int) -> bytes:
    return json.dumps({**GOOD, "params": {"a": json.loads("[" * depth + "]" * depth)}}).encode()


async def test_well_formed_request_reaches_the_server_unchanged() -> None:
    body = json.dumps(GOOD).encode()
    answer = await post(body, "application/json; charset=utf-8")
    assert (answer.status_code, answer.content) == (200, body)


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        pytest.param(b"{not json", "application/json", 400, -32700, id="malformed-json"),
        pytest.param(b"\xff\xfe", "application/json", 400, -32700, id="not-utf8"),
        pytest.param(b"[]", "application/json", 400, -32600, id="empty-batch"),
        pytest.param(b'"hello"', "application/json", 400, -32600, id="not-an-object"),
        pytest.param(b'{"id": 1, "method": "x"}', "application/json", 400, -32600, id="no-jsonrpc"),
        pytest.param(json.dumps(GOOD).encode(), "text/plain", 415, -32600, id="wrong-type"),
        pytest.param(json.dumps(GOOD).encode(), "", 415, -32600, id="no-type"),
        pytest.param(nested(MAX_DEPTH + 1), "application/json", 400, -32600, id="too-deep"),
        pytest.param(b"[" * 200_000, "application/json", 413, -32600, id="oversized"),
    ],
)
async def test_hostile_body_gets_a_clear_json_rpc_error(
    body: bytes, content_type: str, status: int, code: int
) -> None:
    answer = await post(body, content_type)
    assert answer.status_code == status
    error = answer.json()["error"]
    assert error["code"] == code and error["message"].startswith("qcstack gateway: ")


async def test_body_streamed_past_the_limit_is_cut_off() -> None:
    async def chunks() -> Any:
        for _ in range(10):
            yield b" " * 1024

    async with client() as http:
        answer = await http.post(
            "/mcp", content=chunks(), headers={"content-type": "application/json"}
        )
    assert answer.status_code == 413


def test_depth_counting_ignores_brackets_inside_strings() -> None:
    assert nesting_depth(b'{"a": "[[[[{{{{\\"]]]"}') == 1


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=20,
)


def reference_depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((reference_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((reference_depth(v) for v in value.values()), default=0)
    return 0


@given(JSON)
def test_depth_counting_matches_the_parsed_structure(value: Any) -> None:
    assert nesting_depth(json.dumps(value).encode()) == reference_depth(value)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=200)
@given(body=st.binary(max_size=600) | JSON.map(lambda v: json.dumps(v).encode()))
async def test_no_body_gets_past_unless_it_is_json_rpc(body: bytes) -> None:
    answer = await post(body)
    if answer.status_code == 200:
        message = json.loads(body)
        messages = message if isinstance(message, list) else [message]
        assert all(m.get("jsonrpc") == "2.0" for m in messages)
    else:
        assert answer.status_code in (400, 413) and "error" in answer.json()
