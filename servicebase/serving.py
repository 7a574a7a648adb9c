"""Runs a service's ASGI app on uvicorn, the same way for every service of ours."""

from __future__ import annotations

import uvicorn
from starlette.types import ASGIApp


def serve(app: ASGIApp, host: str, port: int) -> None:
    """Serves until stopped. No WebSockets (none of ours takes them), and no uvicorn access log:
    it prints query strings, where clients sometimes put tokens (ours, gateway/accesslog.py,
    does not)."""
    uvicorn.run(app, host=host, port=port, ws="none", log_level="info", access_log=False)
