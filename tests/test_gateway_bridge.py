"""The stdio bridge, launched the way Claude Desktop launches it, in front of a real gateway app
(uvicorn on loopback) in front of a test upstream with qc-mcp's tool names."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fastmcp import Client
from fastmcp.client.transports import StdioTransport

from gateway.settings import GatewaySettings
from tests.mcp_upstream import Upstream, serve_gateway

pytestmark = pytest.mark.anyio
REPO = Path(__file__).resolve().parent.parent
TOKEN = "bridge-test-token-0123456789abcdef"  # noqa: S105 -- a test token


@pytest.fixture
def upstream_tools() -> tuple[str, ...]:
    return ("create_live_algorithm",)


@pytest.fixture
async def gateway_url(upstream: Upstream, tmp_path: Path) -> AsyncIterator[str]:
    settings = GatewaySettings(upstream_url=upstream.url, state_dir=tmp_path / "state")
    async with serve_gateway(settings, TOKEN) as url:
        yield url


def bridge_env(url: str, token_file: Path) -> dict[str, str]:
    return {"QCSTACK_BRIDGE_URL": url, "QCSTACK_BRIDGE_TOKEN_FILE": str(token_file)}


def bridge(url: str, token_file: Path) -> StdioTransport:
    """What a client's configuration launches: the repo's Python, `-m gateway.bridge`."""
    return StdioTransport(
        command=sys.executable,
        args=["-m", "gateway.bridge"],
        env=bridge_env(url, token_file),
        cwd=str(REPO),
    )


async def test_client_launching_the_bridge_reaches_the_gateway(
    gateway_url: str, tmp_path: Path
) -> None:
    token_file = tmp_path / "gateway_token"
    token_file.write_text(TOKEN)
    async with Client(bridge(gateway_url, token_file)) as client:
        assert {t.name for t in await client.list_tools()} == {"read_account"}
        answer = await client.call_tool("read_account", {"model": {"tag": "via-the-bridge"}})
        assert "via-the-bridge" in answer.content[0].text
        # The gateway does not list it, so to the client behind the bridge it does not exist.
        refused = await client.call_tool("create_live_algorithm", {}, raise_on_error=False)
        assert refused.is_error and "create_live_algorithm" in refused.content[0].text


async def test_bridge_with_a_wrong_token_exits_saying_so(gateway_url: str, tmp_path: Path) -> None:
    token_file = tmp_path / "gateway_token"
    token_file.write_text("not-the-gateway-token-at-all")
    done = await asyncio.to_thread(run_bridge, {**bridge_env(gateway_url, token_file)})
    assert done.returncode != 0
    assert "refused the token (401)" in done.stderr


def test_bridge_exits_saying_the_gateway_is_unreachable(tmp_path: Path) -> None:
    token_file = tmp_path / "gateway_token"
    token_file.write_text(TOKEN)
    done = run_bridge(bridge_env("http://127.0.0.1:9/mcp", token_file))
    assert done.returncode != 0
    assert "cannot reach the gateway at http://127.0.0.1:9/mcp" in done.stderr


def run_bridge(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.bridge"],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("token_file", [None, "missing"], ids=["not-set", "missing-file"])
def test_bridge_without_its_token_exits_saying_what_to_set(
    tmp_path: Path, token_file: str | None
) -> None:
    env = {"QCSTACK_BRIDGE_TOKEN_FILE": str(tmp_path / token_file)} if token_file else {}
    done = run_bridge(env)
    assert done.returncode != 0
    assert "QCSTACK_BRIDGE_TOKEN_FILE" in done.stderr or str(tmp_path) in done.stderr
    assert "qcstack bridge:" in done.stderr
