"""Fixtures the gateway's in-process tests share: the asyncio backend and the MCP upstream."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.mcp_upstream import Upstream, free_port


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def upstream_tools() -> tuple[str, ...]:
    """Tools the upstream serves besides read_account (a module overrides this to add some)."""
    return ()


@pytest.fixture
async def upstream(upstream_tools: tuple[str, ...]) -> AsyncIterator[Upstream]:
    server = Upstream(free_port(), extra_tools=upstream_tools)
    await server.start()
    yield server
    await server.stop()
