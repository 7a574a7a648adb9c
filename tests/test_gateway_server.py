"""The gateway's front door: bearer token in constant time, health check open, bad setup refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from gateway.server import BearerGuard, main
from gateway.settings import GatewaySettings, SettingsError, read_secret

TOKEN = b"test-gateway-token-0123456789"


async def inner_app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def request(path: str, headers: list[tuple[bytes, bytes]]) -> int:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "path": path, "headers": headers, "method": "POST"}
    await BearerGuard(inner_app, TOKEN)(scope, receive, send)
    return int(sent[0]["status"])


pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.parametrize(
    "headers",
    [
        [],
        [(b"authorization", b"Bearer wrong-token")],
        [(b"authorization", b"Basic " + TOKEN)],
        [(b"authorization", b"Bearer " + TOKEN + b"x")],
        [(b"authorization", b"Bearer")],
    ],
    ids=["none", "wrong", "basic", "longer", "empty"],
)
async def test_mcp_endpoint_refuses_a_client_without_the_token(
    headers: list[tuple[bytes, bytes]],
) -> None:
    assert await request("/mcp", headers) == 401


async def test_mcp_endpoint_admits_the_token() -> None:
    assert await request("/mcp", [(b"authorization", b"Bearer " + TOKEN)]) == 200
    assert await request("/mcp", [(b"authorization", b"bearer " + TOKEN)]) == 200


async def test_health_check_needs_no_token() -> None:
    assert await request("/healthz", []) == 200


@pytest.mark.parametrize("content", [None, "", "short"], ids=["missing", "empty", "short"])
def test_unusable_token_file_is_refused(tmp_path: Path, content: str | None) -> None:
    path = tmp_path / "gateway_token"
    if content is not None:
        path.write_text(content)
    with pytest.raises(SettingsError, match=str(path)):
        read_secret(path, "the gateway's bearer token")


def test_gateway_refuses_to_start_without_its_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QCSTACK_GATEWAY_TOKEN_FILE", str(tmp_path / "missing"))
    monkeypatch.setenv("QCSTACK_GATEWAY_STATE_DIR", str(tmp_path / "state"))
    with pytest.raises(SystemExit, match="bearer token"):
        main()


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("QCSTACK_GATEWAY_RATE_LIMITS", '{"no_such_tool": "1/60"}', "no such tool"),
        ("QCSTACK_GATEWAY_RATE_LIMITS", '{"create_project": "lots"}', "calls/seconds"),
        ("QCSTACK_GATEWAY_COMPUTE_BUDGET", "0/3600", "calls/seconds"),
        ("QCSTACK_GATEWAY_PROFILE", "yolo", "profile"),
    ],
)
def test_bad_gateway_setting_is_refused_naming_it(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError, match=message):
        GatewaySettings()


async def test_access_log_never_records_the_query_string(caplog: pytest.LogCaptureFixture) -> None:
    from gateway.accesslog import AccessLog

    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/mcp",
        "query_string": b"token=secret-in-the-url",
        "headers": [(b"authorization", b"Bearer secret-in-a-header")],
        "client": ("10.0.0.7", 5000),
    }
    with caplog.at_level("INFO", logger="qcstack.gateway.http"):
        await AccessLog(inner_app)(scope, receive, send)
    assert caplog.messages == ["POST /mcp 200 from 10.0.0.7"]
