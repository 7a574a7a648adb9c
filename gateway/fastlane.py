"""The gateway's fast lane: tools/call and tools/list relayed as JSON, past FastMCP's layers.

A call through FastMCP's proxy is parsed into models and rebuilt twice (its server, then its
client), some 5 ms of the gateway's CPU per call (benchmarks/README.md). The fast lane takes
the two requests an agent makes all the time, on sessions FastMCP opened, and relays them on
the upstream pool as JSON-RPC: a tool call goes through the same CallGate as on FastMCP's
path (decision, audit, rate limit, approval, brokerage fill), its answer is scrubbed of
brokerage secrets; a listing is upstream's, filtered by the profile and kept for a while.
A quick answer goes back as one JSON response (the client keeps its connection for the next
call), a slow one as server-sent events kept alive; a call's outcome is audited once its answer
is out. Everything else (initialize, pings, notifications, DELETE, batches, requests on sessions
FastMCP does not know, anything unusual) goes on to FastMCP unchanged, whose policy
middleware applies the same rules.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.calls import PREFIX, Admitted, CallGate, Refused
from gateway.inbound import replay_body
from gateway.policy import Profile, listed
from gateway.tracing import TRACER_NAME, context_from_meta, set_error
from gateway.upstream import SESSION_HEADER, UpstreamPool

logger = logging.getLogger("qcstack.gateway.fastlane")
tracer = trace.get_tracer(TRACER_NAME)
LISTING_TTL_SECONDS = 60.0
START_WITHIN_SECONDS = 1.0
KEEPALIVE_SECONDS = 15.0
"""While a call waits (for a person, or for upstream), an SSE comment goes out this often, so
that clients and proxies do not give up on a quiet stream."""
WAITING: Message = {"type": "http.response.body", "body": b": waiting\n\n", "more_body": True}
JSONRPC_INTERNAL_ERROR = -32603
LISTING_FAILED = {"code": JSONRPC_INTERNAL_ERROR, "message": PREFIX + "qc-mcp listed no tools"}


def lane_request(body: bytes) -> dict[str, Any] | None:
    """The request, if it is one the fast lane answers: a single tools/call with a name and
    object arguments, or a tools/list without a cursor, with a string or integer id."""
    try:
        message = json.loads(body)
    except ValueError:
        return None
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
        return None
    request_id = message.get("id")
    if isinstance(request_id, bool) or not isinstance(request_id, str | int):
        return None
    params = message.get("params", {})
    if not isinstance(params, dict):
        return None
    method = message.get("method")
    if method == "tools/list":
        return message if params.get("cursor") is None else None
    if method == "tools/call":
        arguments = params.get("arguments", {})
        if isinstance(params.get("name"), str) and isinstance(arguments, dict):
            return message
    return None


def tool_error(text: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": text}], "isError": True}


@dataclass(frozen=True)
class Reply:
    """A fast-lane answer: its JSON-RPC message, and for a tool call that ran upstream, what
    writes its outcome into the audit log once the answer is out."""

    payload: bytes
    outcome: Callable[[], None] | None = None


class ListingCache:
    """Upstream's tool listing, as the profile allows it, serialized once for every client."""

    def __init__(self, upstream: UpstreamPool, profile: Profile, ttl: float) -> None:
        self.upstream = upstream
        self.profile = profile
        self.ttl = ttl
        self._listing: tuple[float, int, bytes] | None = None
        self._fetching = asyncio.Lock()

    def _fresh(self) -> bytes | None:
        listing = self._listing
        if listing is None or listing[1] != self.upstream.generation:
            return None
        return listing[2] if time.monotonic() - listing[0] < self.ttl else None

    async def result(self) -> bytes:
        """The serialized `result` of tools/list; raises if upstream has none to give."""
        fresh = self._fresh()
        if fresh is not None:
            return fresh
        async with self._fetching:
            fresh = self._fresh()
            if fresh is not None:
                return fresh
            generation = self.upstream.generation
            with tracer.start_as_current_span(
                "tools/list", kind=SpanKind.CLIENT, attributes={"mcp.method.name": "tools/list"}
            ):
                response = await self.upstream.request("tools/list", {})
            tools = response.get("result", {}).get("tools")
            if not isinstance(tools, list):
                raise LookupError("upstream listed no tools")
            allowed = [
                tool
                for tool in tools
                if isinstance(tool, dict) and listed(str(tool.get("name")), self.profile)
            ]
            serialized = json.dumps({"tools": allowed}, separators=(",", ":")).encode()
            self._listing = (time.monotonic(), generation, serialized)
            return serialized


class FastLane:
    """ASGI middleware in front of FastMCP's MCP endpoint (after the request checks)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        path: str,
        calls: CallGate,
        upstream: UpstreamPool,
        session_open: Callable[[str], bool],
        listing_ttl: float = LISTING_TTL_SECONDS,
    ) -> None:
        self.app = app
        self.path = path
        self.calls = calls
        self.upstream = upstream
        self.session_open = session_open
        self.listings = ListingCache(upstream, calls.gate.profile, listing_ttl)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        request = lane_request(body)
        session = self._takes(request, scope["headers"])
        if request is None or session is None:
            await self.app(scope, replay_body(body, receive), send)
            return
        if request["method"] == "tools/list":
            reply = asyncio.ensure_future(self._listing(request, session))
        else:
            reply = asyncio.ensure_future(self._call(request, session))
        await _answer(reply, session, send)

    def _takes(
        self, request: Mapping[str, Any] | None, raw_headers: list[tuple[bytes, bytes]]
    ) -> str | None:
        """The request's session id if the fast lane takes it: only a request FastMCP would
        serve, on its terms, as this one SSE answer. Upstream speaks the protocols of the
        initialize handshake (qc-mcp is an mcp 1.x server), and so does the fast lane; a client
        of the sessionless protocol gets FastMCP, which translates."""
        if request is None:
            return None
        headers = {key.decode("latin-1"): value.decode("latin-1") for key, value in raw_headers}
        accept = headers.get("accept", "").lower()
        if "application/json" not in accept or "text/event-stream" not in accept:
            return None
        version = headers.get("mcp-protocol-version")
        if version is not None and version not in HANDSHAKE_PROTOCOL_VERSIONS:
            return None
        session = headers.get(SESSION_HEADER, "")
        return session if session and self.session_open(session) else None

    async def _listing(self, request: Mapping[str, Any], session: str) -> Reply:
        head = b'{"jsonrpc":"2.0","id":' + json.dumps(request["id"]).encode()
        with tracer.start_as_current_span(
            "tools/list",
            context=context_from_meta(request.get("params", {}).get("_meta")),
            kind=SpanKind.SERVER,
            attributes=_server_attributes("tools/list", request, session),
            record_exception=False,
        ) as span:
            try:
                return Reply(head + b',"result":' + await self.listings.result() + b"}")
            except Exception as error:  # the client gets an error, never a partial list
                set_error(span, type(error).__name__)
                return Reply(head + b',"error":' + json.dumps(LISTING_FAILED).encode() + b"}")

    async def _call(self, request: Mapping[str, Any], session: str) -> Reply:
        params = request["params"]
        tool = params["name"]
        ids = {"session": session, "request": str(request["id"])}
        attributes = {
            **_server_attributes("tools/call", request, session),
            "gen_ai.tool.name": tool,
            "gen_ai.operation.name": "execute_tool",
        }
        with tracer.start_as_current_span(
            f"tools/call {tool}",
            context=context_from_meta(params.get("_meta")),
            kind=SpanKind.SERVER,
            attributes=attributes,
            record_exception=False,  # exception texts stay in the gateway's log
        ) as span:
            outcome: Callable[[], None] | None = None
            try:
                admitted = await self.calls.admit(tool, params.get("arguments", {}), ids)
                result, outcome = await self._relay(tool, admitted)
                if result.get("isError"):
                    set_error(span, "tool_error")
            except Refused as refused:
                set_error(span, "refused")
                result = tool_error(str(refused))
            except Exception as error:
                logger.exception("tool call %s failed in the gateway", tool)
                set_error(span, type(error).__name__)
                result = tool_error(PREFIX + f"{tool} failed in the gateway; see its log")
        payload = json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": result}).encode()
        return Reply(payload, outcome)

    async def _relay(
        self, tool: str, admitted: Admitted
    ) -> tuple[dict[str, Any], Callable[[], None]]:
        """Upstream's result, and what writes the call's outcome into the audit log (once the
        answer is out)."""
        brokerages = self.calls.gate.brokerages
        with tracer.start_as_current_span(
            f"tools/call {tool}",
            kind=SpanKind.CLIENT,
            attributes={"mcp.method.name": "tools/call", "gen_ai.tool.name": tool},
            record_exception=False,
        ) as span:
            try:
                response = await self.upstream.request(
                    "tools/call", {"name": tool, "arguments": admitted.arguments}
                )
            except Exception as error:
                set_error(span, type(error).__name__)
                failed = partial(self.calls.failed, admitted, type(error).__name__)
                return tool_error(PREFIX + f"{tool} failed before an answer came back"), failed
            if "error" in response:
                set_error(span, str(response["error"].get("code", "jsonrpc_error")))
                reported = response["error"].get("message", "error")
                message = brokerages.scrub(f"qc-mcp: {reported}")
                return tool_error(message), partial(self.calls.failed, admitted, message)
        result: dict[str, Any] = brokerages.scrub_json(response["result"])
        return result, partial(self.calls.completed, admitted, is_error=bool(result.get("isError")))


def _server_attributes(method: str, request: Mapping[str, Any], session: str) -> dict[str, str]:
    return {
        "mcp.method.name": method,
        "jsonrpc.request.id": str(request["id"]),
        "jsonrpc.protocol.version": "2.0",
        "mcp.session.id": session,
        "network.transport": "tcp",
    }


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if message["type"] != "http.request" or not message.get("more_body", False):
            return b"".join(chunks)


async def _answer(reply: asyncio.Future[Reply], session: str, send: Send) -> None:
    """Sends the reply. A quick one (within START_WITHIN_SECONDS) goes out as one JSON
    response with its length, so the client can use its connection again; a slow one (a call
    held for a person) as a stream of server-sent events, an SSE comment every
    KEEPALIVE_SECONDS until the reply is there. The call's outcome goes into the audit log
    after that, or when the reply comes if this stops waiting for it."""
    session_header = (b"mcp-session-id", session.encode("latin-1"))
    try:
        done, _ = await asyncio.wait({reply}, timeout=START_WITHIN_SECONDS)
        if done:
            payload = reply.result().payload
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                session_header,
            ]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": payload})
            return
        headers = [
            (b"content-type", b"text/event-stream"),
            (b"cache-control", b"no-cache, no-transform"),
            session_header,
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        while not done:
            done, _ = await asyncio.wait({reply}, timeout=KEEPALIVE_SECONDS)
            if not done:
                await send(WAITING)
        event = b"event: message\ndata: " + reply.result().payload + b"\n\n"
        await send({"type": "http.response.body", "body": event})
    finally:
        if reply.done():
            _record_outcome(reply)
        else:
            reply.add_done_callback(_record_outcome)


def _record_outcome(reply: asyncio.Future[Reply]) -> None:
    if reply.cancelled():
        return
    if reply.exception() is not None:
        logger.error("a fast-lane reply failed", exc_info=reply.exception())
        return
    outcome = reply.result().outcome
    if outcome is None:
        return
    try:
        outcome()
    except Refused as refused:  # the answer is out; the log says why the entry is missing
        logger.error("the outcome of a tool call is not in the audit log: %s", refused)
