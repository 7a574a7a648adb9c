"""A small HTTP/1.1 client for the fast lane's POSTs to qc-mcp: kept-alive connections, httptools.

The fast lane sends every tool call and listing to one known upstream on the stack's internal
network. httpx2 spent some 1.3 ms of the gateway's CPU on each such request (its client layers,
h11 in pure Python, a log line per request; profiled, benchmarks/README.md); this client does
only what those requests need: a POST with a body, an answer with Content-Length or chunked
encoding, parsed by httptools (the C parser uvicorn uses), on connections kept open between
requests. Anything off that path is an error, never guessed at: an answer larger than
`max_answer_bytes`, a malformed one, one that does not come within the timeout.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import httptools

ANSWER_MAX_BYTES = 64 * 1024 * 1024
"""The largest answer taken from upstream: far above qc-mcp's largest (its 300 KB tool list),
far below the gateway's memory limit."""


class UpstreamConnectError(ConnectionError):
    """No connection to upstream could be made: nothing of the request was sent."""


class UpstreamHTTPError(ConnectionError):
    """The request was sent (it may have run upstream) but no whole answer came back."""


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]
    """Header names in lower case; a repeated header keeps its last value."""
    body: bytes

    @property
    def media_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()


Enough = Callable[[Mapping[str, str], bytes], bool]
"""Whether an answer's headers and body so far hold all the caller needs: a streamed answer
(server-sent events) is taken as soon as it does, without waiting for the stream to end."""

IDLE_SECONDS = 3.0
"""How long a connection is kept unused. Upstream (uvicorn) closes one after 5 s unused; this
side lets go first, so that no request is sent on a connection the server is closing."""

LINGER_SECONDS = 10.0
"""How long a connection whose answer was taken early may take to finish its stream."""


class _Connection(asyncio.Protocol):
    """One kept-alive connection, one exchange at a time. An exchange ends (and `on_done` is
    called, once) when the answer is complete or the connection fails."""

    def __init__(self, max_answer_bytes: int) -> None:
        self.max_answer_bytes = max_answer_bytes
        self.transport: asyncio.Transport | None = None
        self.open = False
        self.on_done: Callable[[_Connection], None] | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._answer: asyncio.Future[Answer] | None = None
        self._enough: Enough | None = None
        self._status = 0
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._size = 0
        self._linger: asyncio.TimerHandle | None = None

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.open = True

    def data_received(self, data: bytes) -> None:
        if self.on_done is None:
            self._fail(UpstreamHTTPError("upstream sent data nobody asked for"))
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._fail(UpstreamHTTPError(f"upstream's answer is not HTTP/1.1 ({error})"))

    def eof_received(self) -> bool:
        self._fail(UpstreamHTTPError("upstream closed the connection before answering"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        self._fail(UpstreamHTTPError(f"the connection to upstream was lost ({exc or 'closed'})"))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > self.max_answer_bytes:
            self._fail(
                UpstreamHTTPError(f"upstream's answer is over {self.max_answer_bytes} bytes")
            )
            return
        self._body.append(body)
        answer = self._answer
        if answer is None or answer.done() or self._enough is None or not body.endswith(b"\n"):
            return
        joined = b"".join(self._body)
        self._body = [joined]
        if self._enough(self._headers, joined):
            answer.set_result(Answer(self._status, self._headers, joined))
            self._linger = asyncio.get_running_loop().call_later(LINGER_SECONDS, self.close)

    def on_message_complete(self) -> None:
        answer = self._answer
        if answer is not None and not answer.done():
            answer.set_result(Answer(self._status, self._headers, b"".join(self._body)))
        if not self._parser.should_keep_alive():
            self.close()
        self._done()

    # the client's side
    async def exchange(self, request: bytes, timeout: float, enough: Enough | None) -> Answer:
        assert self.transport is not None
        answer = self._answer = asyncio.get_running_loop().create_future()
        self._enough = enough
        self._status, self._headers, self._body, self._size = 0, {}, [], 0
        self.transport.write(request)
        try:
            return await asyncio.wait_for(answer, timeout)
        except TimeoutError:
            self.close()
            raise UpstreamHTTPError(f"no answer from upstream within {timeout:g}s") from None
        except BaseException:
            self.close()  # cancelled or failed half way: the connection's state is unknown
            raise

    def _fail(self, error: Exception) -> None:
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(error)
        self.close()

    def _done(self) -> None:
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        on_done, self.on_done = self.on_done, None
        self._answer = None
        if on_done is not None:
            on_done(self)

    def close(self) -> None:
        self.open = False
        if self.transport is not None:
            self.transport.close()
        self._done()


class UpstreamHTTP:
    """POSTs to one http:// URL on up to `max_connections` connections, `max_idle` kept open."""

    def __init__(
        self,
        url: str,
        *,
        max_connections: int = 64,
        max_idle: int = 16,
        connect_timeout: float = 30.0,
        read_timeout: float = 300.0,
        max_answer_bytes: int = ANSWER_MAX_BYTES,
        idle_seconds: float = IDLE_SECONDS,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname or parts.query or parts.fragment:
            raise ValueError(f"upstream URL {url!r}: expected http://host[:port]/path")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.path = parts.path or "/"
        self._host_header = parts.netloc
        self.max_idle = max_idle
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_answer_bytes = max_answer_bytes
        self.idle_seconds = idle_seconds
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: list[tuple[float, _Connection]] = []
        """Connections not in use, each with the time it was last used; the newest last."""
        self._closed = False

    async def post(
        self, body: bytes, headers: Mapping[str, str], *, enough: Enough | None = None
    ) -> Answer:
        """Upstream's answer to a POST of `body` to the URL's path, whole, or as soon as
        `enough` says it holds what is needed. Raises UpstreamConnectError when no connection
        could be made (nothing was sent), UpstreamHTTPError when no answer came."""
        request = self._request(body, headers)
        await self._slots.acquire()
        try:
            connection = self._idle_connection() or await self._connect()
        except BaseException:
            self._slots.release()
            raise
        connection.on_done = self._release
        return await connection.exchange(request, self.read_timeout, enough)

    def _release(self, connection: _Connection) -> None:
        self._slots.release()
        self._prune()
        if connection.open and not self._closed and len(self._idle) < self.max_idle:
            self._idle.append((time.monotonic(), connection))
        else:
            connection.close()

    def _prune(self) -> None:
        """Closes and forgets the idle connections that were unused for too long."""
        now = time.monotonic()
        kept = []
        for since, connection in self._idle:
            if connection.open and now - since < self.idle_seconds:
                kept.append((since, connection))
            else:
                connection.close()
        self._idle = kept

    def _request(self, body: bytes, headers: Mapping[str, str]) -> bytes:
        lines = [f"POST {self.path} HTTP/1.1", f"host: {self._host_header}"]
        for name, value in headers.items():
            if "\r" in name or "\n" in name or "\r" in value or "\n" in value:
                raise ValueError(f"header {name!r} holds a line break")
            lines.append(f"{name}: {value}")
        lines.append(f"content-length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

    def _idle_connection(self) -> _Connection | None:
        """The connection used last, if one is still open and not unused for too long."""
        self._prune()
        return self._idle.pop()[1] if self._idle else None

    async def _connect(self) -> _Connection:
        if self._closed:
            raise UpstreamConnectError("the upstream client is closed")
        loop = asyncio.get_running_loop()
        try:
            _, connection = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _Connection(self.max_answer_bytes), self.host, self.port
                ),
                self.connect_timeout,
            )
        except (OSError, TimeoutError) as error:
            reason = str(error) or type(error).__name__
            raise UpstreamConnectError(
                f"cannot connect to {self.host}:{self.port}: {reason}"
            ) from None
        return connection

    def close(self) -> None:
        """Closes the idle connections; those in use close as their exchanges end."""
        self._closed = True
        idle, self._idle = self._idle, []
        for _, connection in idle:
            connection.close()
