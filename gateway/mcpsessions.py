"""The client sessions FastMCP's HTTP app has open: looked up by id, and capped in number."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.routing import Route


class MCPSessions:
    """Reads the MCP SDK's session manager inside FastMCP's app (which does not expose it)."""

    def __init__(self, app: Starlette, path: str) -> None:
        endpoints = [
            route.endpoint
            for route in app.router.routes
            if isinstance(route, Route) and route.path == path
        ]
        if len(endpoints) != 1:
            raise RuntimeError(f"FastMCP's app has no single MCP endpoint at {path}")
        self._endpoint = endpoints[0]

    def _manager(self) -> Any:
        manager = getattr(self._endpoint, "session_manager", None)
        if manager is None or not isinstance(getattr(manager, "_server_instances", None), dict):
            # The app is not running, or a new MCP SDK keeps its sessions elsewhere.
            raise RuntimeError("FastMCP's session manager is not running or not recognised")
        return manager

    def is_open(self, session_id: str) -> bool:
        try:
            return session_id in self._manager()._server_instances
        except RuntimeError:
            return False

    def cap(self, app: Starlette, max_sessions: int) -> None:
        """From the app's start on, a request that would open a session beyond `max_sessions`
        gets the SDK's 503 (each open session costs the gateway memory; see README)."""
        started = app.router.lifespan_context

        @asynccontextmanager
        async def lifespan(running: Starlette) -> AsyncIterator[Any]:
            async with started(running) as state:
                self._manager().max_sessions = max_sessions
                yield state

        app.router.lifespan_context = lifespan
