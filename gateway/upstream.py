"""The gateway's upstream: a few MCP sessions to qc-mcp, kept open and shared by client calls.

fastmcp's proxy, given a URL or a disconnected client, opens a new upstream session for every
request it relays (HTTP connection, initialize handshake, DELETE, on top of the request itself;
benchmarks/gateway_latency.py measures what that costs). Given a connected client it reuses
that one session, but fastmcp's ProxyClient then relays upstream's server-initiated messages
to whichever client call last used it. UpstreamPool keeps `size` sessions open and hands them
out in turn, as the proxy's client factory, on these terms:

- Nothing of the client's goes upstream by way of the session: its HTTP client carries no
  header of ours or theirs (forward_incoming_headers=False), and it is opened in an empty
  contextvars context, so its background tasks hold nothing of the request that opened it.
- Nothing comes back by way of it: sampling, elicitation and roots are not offered to
  upstream, and its log and progress notifications are logged here, not passed to a client
  (a shared session cannot tell whose they are).
- A session upstream no longer knows (HTTP 404: qc-mcp restarted, or expired it) or whose
  connection died is replaced on next use. A request that upstream refused for its session
  never ran there, so it is sent once more on the new session; so is a listing or a ping that
  failed to connect. Any other failure is reported, never repeated: a tool call may have run.
- Concurrent calls share a session as concurrent requests (JSON-RPC ids keep them apart); a
  failure that kills a session fails only the calls in flight on it.

`request` sends one JSON-RPC request on a pool session as a plain HTTP POST and returns
upstream's JSON-RPC response as it came: the gateway's fast lane (gateway/fastlane.py) relays
tool calls and listings that way, without the MCP client layer's per-call cost. Each request
gets a JSON-RPC id of the pool's own, so that clients' ids cannot collide on a shared session.

ToolListCache serves tools/list from memory. qc-mcp's tool list is fixed by its code, yet
fetching it, building a proxy tool for each of its 64 tools and inlining their schemas' $refs
cost the gateway some 200 ms of CPU per listing (profiled), on every client's tools/list.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import httpx2
from fastmcp import Client
from fastmcp.client.logging import LogMessage
from fastmcp.client.transports import StreamableHttpTransport
from fastmcp.server.middleware import CallNext, Middleware, MiddlewareContext
from fastmcp.server.providers.proxy import PROXY_TRANSPORT_OPTIONS
from fastmcp.tools import Tool
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_REQUEST, ListToolsRequest

from gateway.tracing import current_carrier
from gateway.upstreamhttp import Answer, UpstreamConnectError, UpstreamHTTP

logger = logging.getLogger("qcstack.gateway.upstream")

SESSION_HEADER = "mcp-session-id"
TOOL_LIST_TTL_SECONDS = 60.0
T = TypeVar("T")


class UpstreamClosed(RuntimeError):
    """The pool was closed (the gateway is stopping)."""


class UpstreamAnswerError(RuntimeError):
    """Upstream answered a request with something other than its JSON-RPC response."""


class _SessionGone(Exception):
    """Upstream refused a request for its session (404): the request never ran there."""


async def _log_upstream(message: LogMessage) -> None:
    logger.debug("upstream log (%s): %s", message.level, message.data)


async def _drop_progress(progress: float, total: float | None, message: str | None) -> None:
    logger.debug("upstream progress %s/%s not relayed: %s", progress, total, message)


def _connect_failed(error: BaseException) -> bool:
    """True when the error is, or was caused by, a connection that was never made."""
    seen: set[int] = set()
    stack: list[BaseException] = [error]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, httpx2.ConnectError | httpx2.ConnectTimeout):
            return True
        if isinstance(current, BaseExceptionGroup):
            stack.extend(current.exceptions)
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                stack.append(linked)
    return False


class UpstreamClient(Client[StreamableHttpTransport]):
    """One upstream session, owned by an UpstreamPool: entering and leaving `async with` (as
    the proxy does around every call) neither opens nor closes it."""

    def __init__(self, pool: UpstreamPool, slot: int) -> None:
        self._pool = pool
        self._slot = slot
        self.gone = False
        """Upstream answered 404 for this session: it no longer exists there."""
        super().__init__(
            StreamableHttpTransport(pool.url, httpx_client_factory=self._http_client),
            name=f"qcstack-upstream-{slot}",
            mode="legacy",  # qc-mcp is an mcp 1.x server
            log_handler=_log_upstream,
            progress_handler=_drop_progress,
            timeout=pool.timeout,
        )
        # Relay results without policing upstream's output schemas (as fastmcp's proxy does),
        # and never pass the incoming request's headers on.
        self._transport_options = replace(PROXY_TRANSPORT_OPTIONS, forward_incoming_headers=False)

    def _http_client(
        self,
        headers: dict[str, str] | None = None,
        timeout: httpx2.Timeout | None = None,
        auth: httpx2.Auth | None = None,
        **options: Any,
    ) -> httpx2.AsyncClient:
        # The transport has no headers or auth of its own and forwards none: nothing to pass.
        if headers or auth is not None:
            raise ValueError("the upstream client takes no headers and no auth")
        return httpx2.AsyncClient(
            timeout=timeout or httpx2.Timeout(30.0, read=300.0),
            event_hooks={"response": [self._watch_response]},
        )

    async def _watch_response(self, response: httpx2.Response) -> None:
        if response.status_code == 404 and SESSION_HEADER in response.request.headers:
            self.gone = True

    @property
    def usable(self) -> bool:
        state = self._session_state
        task = state.session_task
        return not self.gone and state.session is not None and task is not None and not task.done()

    async def __aenter__(self) -> UpstreamClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None

    async def _relay(
        self, call: Callable[[Client[Any]], Awaitable[T]], *, idempotent: bool = True
    ) -> T:
        """Runs `call` on this session; once more on a new one if upstream surely never ran it:
        it refused the request for its session (404), or, for a request that may safely run
        twice, a connection failed. (A failed connection kills the whole session, so a tool
        call in flight on it sees that failure too, even if its own request got through.)"""
        try:
            return await call(self)
        except Exception as error:
            refused = (
                self.gone and isinstance(error, MCPError) and error.error.code == INVALID_REQUEST
            )
            if not (refused or (idempotent and _connect_failed(error))):
                if not self.usable:
                    self._pool.retire(self)
                raise
            logger.info(
                "upstream session %s lost (%s); sending again on a new one", self.name, error
            )
        replacement = await self._pool.renew(self._slot, self)
        return await call(replacement)

    # The requests fastmcp's proxy makes of its client (ProxyProvider, ProxyTool, ping).
    async def list_tools_mcp(self, *args: Any, **kwargs: Any) -> Any:
        return await self._relay(lambda c: Client.list_tools_mcp(c, *args, **kwargs))

    async def call_tool_mcp(self, *args: Any, **kwargs: Any) -> Any:
        return await self._relay(
            lambda c: Client.call_tool_mcp(c, *args, **kwargs), idempotent=False
        )

    async def list_resources_mcp(self, *args: Any, **kwargs: Any) -> Any:
        return await self._relay(lambda c: Client.list_resources_mcp(c, *args, **kwargs))

    async def list_resource_templates_mcp(self, *args: Any, **kwargs: Any) -> Any:
        return await self._relay(lambda c: Client.list_resource_templates_mcp(c, *args, **kwargs))

    async def read_resource_mcp(self, *args: Any, **kwargs: Any) -> Any:
        return await self._relay(lambda c: Client.read_resource_mcp(c, *args, **kwargs))

    async def list_prompts_mcp(self, *args: Any, **kwargs: Any) -> Any:
        return await self._relay(lambda c: Client.list_prompts_mcp(c, *args, **kwargs))

    async def get_prompt_mcp(self, *args: Any, **kwargs: Any) -> Any:
        return await self._relay(lambda c: Client.get_prompt_mcp(c, *args, **kwargs))

    async def ping(self) -> bool:
        return await self._relay(lambda c: Client.ping(c))


class ToolListCache(Middleware):
    """Answers tools/list with the listing it fetched last, for `ttl` seconds or until it is
    dropped (UpstreamPool drops it when it replaces a session: upstream may have restarted as
    another version). One listing serves every client, so it must sit below anything that
    decides per client: the gateway's policy filters the cached listing on every request, and
    the gateway has no per-client tool visibility. Concurrent misses make one fetch."""

    def __init__(self, ttl: float = TOOL_LIST_TTL_SECONDS) -> None:
        self.ttl = ttl
        self._listing: tuple[float, Sequence[Tool]] | None = None
        self._generation = 0
        self._fetching = asyncio.Lock()

    def drop(self) -> None:
        self._listing = None
        self._generation += 1

    def _fresh(self) -> Sequence[Tool] | None:
        listing = self._listing
        if listing is not None and time.monotonic() - listing[0] < self.ttl:
            return listing[1]
        return None

    async def on_list_tools(
        self,
        context: MiddlewareContext[ListToolsRequest],
        call_next: CallNext[ListToolsRequest, Sequence[Tool]],
    ) -> Sequence[Tool]:
        tools = self._fresh()
        if tools is not None:
            return tools
        async with self._fetching:
            tools = self._fresh()
            if tools is not None:
                return tools
            generation = self._generation
            tools = await call_next(context)
            if generation == self._generation:  # not dropped while it was fetched
                self._listing = (time.monotonic(), tools)
            return tools


@dataclass
class _Slot:
    client: UpstreamClient | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class UpstreamPool:
    """`size` persistent sessions to `url`; `client()` is the proxy's client factory."""

    def __init__(self, url: str, size: int = 4, *, timeout: float | None = None) -> None:
        if size < 1:
            raise ValueError("an upstream pool needs at least one session")
        self.url = url
        self.timeout = timeout
        self._slots = [_Slot() for _ in range(size)]
        self._turn = itertools.count()
        self._closing: set[asyncio.Task[None]] = set()
        self._closed = False
        self.tool_list_cache = ToolListCache()
        """The proxy's middleware that serves tools/list from memory (see ToolListCache)."""
        self.generation = 0
        """Goes up whenever a session is lost: upstream may have restarted as another version."""
        self._request_ids = itertools.count(1)
        self._http = UpstreamHTTP(url)

    async def client(self) -> UpstreamClient:
        """A usable session, in turn; opens or replaces one only when it has to."""
        index = next(self._turn) % len(self._slots)
        current = self._slots[index].client
        if current is not None and current.usable:
            return current
        return await self.renew(index, current)

    async def renew(self, index: int, stale: UpstreamClient | None) -> UpstreamClient:
        """Replaces `stale` in slot `index` with a new session, unless another call has."""
        slot = self._slots[index]
        async with slot.lock:
            current = slot.client
            if current is not None and current is not stale and current.usable:
                return current
            if current is not None:
                self.retire(current)
            if stale is not None:
                logger.warning(
                    "upstream session %d lost (qc-mcp restarted?): opening another", index
                )
            if self._closed:
                raise UpstreamClosed("the gateway is stopping")
            fresh = UpstreamClient(self, index)
            # An empty context: the session's background tasks must not carry the request
            # (its headers, its trace) that happened to open it.
            await asyncio.get_running_loop().create_task(
                fresh._connect(),  # type: ignore[no-untyped-call]  # fastmcp leaves it untyped
                context=contextvars.Context(),
            )
            slot.client = fresh
            return fresh

    def retire(self, client: UpstreamClient) -> None:
        """Takes `client` out of its slot and closes it in the background."""
        slot = self._slots[client._slot]
        if slot.client is client:
            slot.client = None
        self.tool_list_cache.drop()  # a session was lost: upstream may be another version now
        self.generation += 1
        task = asyncio.get_running_loop().create_task(
            client._disconnect(force=True), context=contextvars.Context()
        )
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def aclose(self) -> None:
        """Closes every session (each ends with a DELETE upstream)."""
        self._closed = True
        for slot in self._slots:
            async with slot.lock:
                if slot.client is not None:
                    self.retire(slot.client)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        self._http.close()

    async def request(self, method: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """Upstream's JSON-RPC response (`result` or `error`) to one request on a pool session.
        Sent once more, on a new session, only when upstream surely never ran it: it refused
        the session (404), or no connection was made."""
        client = await self.client()
        try:
            return await self._post(client, method, params)
        except _SessionGone:
            logger.info("upstream session %s gone; sending again on a new one", client.name)
        except UpstreamConnectError as error:
            logger.info("no connection to upstream (%s); trying a new session", error)
        return await self._post(await self.renew(client._slot, client), method, params)

    async def _post(
        self, client: UpstreamClient, method: str, params: Mapping[str, Any]
    ) -> dict[str, Any]:
        session = client.transport.get_session_id()
        if session is None or not client.usable:
            raise _SessionGone
        request_id = f"qcstack-{next(self._request_ids)}"
        headers = {
            "content-type": "application/json",
            "accept": "application/json, text/event-stream",
            SESSION_HEADER: session,
        }
        if client.protocol_version is not None:
            headers["mcp-protocol-version"] = client.protocol_version
        # The current trace goes on, to qc-mcp's HTTP instrumentation and in MCP's own place.
        carrier = current_carrier()
        headers.update(carrier)
        sent = dict(params)
        if carrier:
            sent["_meta"] = {**dict(sent.get("_meta") or {}), **carrier}
        body = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": sent}
        finder = _ResponseFinder(request_id)
        answer = await self._http.post(json.dumps(body).encode(), headers, enough=finder.enough)
        if answer.status == 404:
            client.gone = True
            raise _SessionGone
        if answer.status != 200:
            raise UpstreamAnswerError(f"upstream answered HTTP {answer.status}")
        response = finder.response or _response_to(request_id, answer)
        if response is None:
            raise UpstreamAnswerError("upstream's answer holds no response to the request")
        return response

    def sessions(self) -> list[str | None]:
        """The upstream session ids in use (for tests and diagnostics)."""
        return [
            slot.client.transport.get_session_id() if slot.client is not None else None
            for slot in self._slots
        ]


def _response_to(request_id: str, answer: Answer) -> dict[str, Any] | None:
    """The JSON-RPC response with `request_id` in an answer of JSON or of server-sent events
    (upstream may send its log notifications first, on the same stream); None if it has none."""
    media = answer.media_type
    if media == "application/json":
        candidates: list[Any] = [json.loads(answer.body)]
    elif media == "text/event-stream":
        candidates = [
            json.loads("\n".join(line[5:].lstrip(" ") for line in lines))
            for lines in _event_data(answer.body.decode())
        ]
    else:
        raise UpstreamAnswerError(f"upstream answered {media or 'no media type'}")
    for message in candidates:
        answered = isinstance(message, dict) and message.get("id") == request_id
        if answered and any(isinstance(message.get(key), dict) for key in ("result", "error")):
            return dict(message)
    return None


class _ResponseFinder:
    """Looks for the response to one request in upstream's stream of server-sent events as it
    comes in, so that the fast lane takes it without waiting for upstream to end the stream."""

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        self.needle = json.dumps(request_id).encode()
        self.response: dict[str, Any] | None = None

    def enough(self, headers: Mapping[str, str], body: bytes) -> bool:
        if self.needle not in body or not body.endswith((b"\n\n", b"\r\n\r\n")):
            return False
        answer = Answer(200, headers, body)
        if answer.media_type != "text/event-stream":
            return False
        try:
            self.response = _response_to(self.request_id, answer)
        except ValueError:  # an event cut short: wait for the rest
            return False
        return self.response is not None


def _event_data(text: str) -> list[list[str]]:
    """The `data:` lines of each server-sent event that has any."""
    events: list[list[str]] = []
    lines: list[str] = []
    for line in text.splitlines():
        if not line:
            if lines:
                events.append(lines)
            lines = []
        elif line.startswith("data:"):
            lines.append(line)
    if lines:
        events.append(lines)
    return events
