"""Runs a service's ASGI app on uvicorn, the same way for every service of ours."""

from __future__ import annotations

import logging
import logging.handlers
import queue
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

import uvicorn
from starlette.types import ASGIApp

LOG_FORMAT = "%(levelname)s: %(message)s"
KEEP_ALIVE_SECONDS = 75
"""How long an unused client connection is kept open: longer than clients keep theirs (httpx, the
mcp client's, 5 s), so that the client lets go first and never sends a request on a connection
the server is closing (uvicorn's own default is that same 5 s)."""


class Stopped(SystemExit):
    """SIGTERM, once uvicorn has shut the server down: ends the process through its `finally`
    blocks (spans sent, log lines written) instead of the signal's default action."""


def _stop(signum: int, frame: FrameType | None) -> None:
    raise Stopped(0)


@contextmanager
def background_logging(level: int = logging.INFO) -> Iterator[None]:
    """Log lines are written to stderr by a thread of their own, so that no request waits on
    the container's log pipe (a line cost the gateway's event loop ~0.3 ms; benchmarks/README.md);
    the lines still queued are written when the block ends."""
    lines: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(logging.Formatter(LOG_FORMAT))
    writer = logging.handlers.QueueListener(lines, stderr)
    root = logging.getLogger()
    handlers, previous_level = root.handlers[:], root.level
    root.handlers[:] = [logging.handlers.QueueHandler(lines)]
    root.setLevel(level)
    writer.start()
    try:
        yield
    finally:
        writer.stop()
        root.handlers[:] = handlers
        root.setLevel(previous_level)


def serve(app: ASGIApp, host: str, port: int) -> None:
    """Serves until stopped (SIGTERM or SIGINT), then returns. No WebSockets (none of ours
    takes them), and no uvicorn access log: it prints query strings, where clients sometimes
    put tokens (ours, gateway/accesslog.py, does not)."""
    # uvicorn shuts down gracefully on SIGTERM, then raises it again with the handler that was
    # there before it started: this one, not the default that would end the process at once.
    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        uvicorn.run(
            app,
            host=host,
            port=port,
            ws="none",
            log_level="info",
            access_log=False,
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
        )
    except Stopped:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
