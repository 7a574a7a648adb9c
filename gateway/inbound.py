"""Checks each MCP request's body before FastMCP parses it: size, media type and JSON shape."""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

JSONRPC_PARSE_ERROR = -32700
JSONRPC_INVALID_REQUEST = -32600


class BodyRefused(Exception):
    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def nesting_depth(body: bytes) -> int:
    """The deepest nesting of arrays and objects in a JSON text, counted without recursion (so a
    hostile body cannot exhaust the parser's stack before it is refused)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return deepest


def check_body(body: bytes, max_depth: int) -> None:
    """Refuses what is not one JSON-RPC message (or batch) of sane shape."""
    if nesting_depth(body) > max_depth:
        raise BodyRefused(
            400, JSONRPC_INVALID_REQUEST, f"JSON nested deeper than {max_depth} levels"
        )
    try:
        message = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise BodyRefused(400, JSONRPC_PARSE_ERROR, "body is not valid JSON") from None
    messages = message if isinstance(message, list) else [message]
    if not messages or not all(
        isinstance(m, dict) and m.get("jsonrpc") == "2.0" and isinstance(m.get("method", ""), str)
        for m in messages
    ):
        raise BodyRefused(400, JSONRPC_INVALID_REQUEST, "not a JSON-RPC 2.0 message")


class RequestLimits:
    """POSTs to the MCP endpoint must be application/json, at most max_bytes, nested at most
    max_depth deep, and JSON-RPC 2.0; anything else gets a JSON-RPC error with a 4xx status."""

    def __init__(self, app: ASGIApp, path: str, max_bytes: int, max_depth: int) -> None:
        self.app = app
        self.path = path
        self.max_bytes = max_bytes
        self.max_depth = max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        try:
            body = await self._read_body(scope, receive)
            check_body(body, self.max_depth)
        except BodyRefused as refused:
            await _refuse(send, refused)
            return
        await self.app(scope, replay_body(body, receive), send)

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        headers = dict(scope["headers"])
        media = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if media != b"application/json":
            raise BodyRefused(415, JSONRPC_INVALID_REQUEST, "send Content-Type: application/json")
        declared = headers.get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise _too_large(self.max_bytes)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise BodyRefused(400, JSONRPC_INVALID_REQUEST, "client went away")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                raise _too_large(self.max_bytes)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _too_large(limit: int) -> BodyRefused:
    return BodyRefused(413, JSONRPC_INVALID_REQUEST, f"body larger than {limit} bytes")


def replay_body(body: bytes, receive: Receive) -> Receive:
    """A receive that gives the body read already, then whatever comes after it."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _refuse(send: Send, refused: BodyRefused) -> None:
    error: dict[str, Any] = {
        "jsonrpc": "2.0",
        "id": None,
        "error": {"code": refused.code, "message": f"qcstack gateway: {refused.message}"},
    }
    payload = json.dumps(error).encode()
    await send(
        {
            "type": "http.response.start",
            "status": refused.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
