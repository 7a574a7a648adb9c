"""The fast lane's HTTP/1.1 client (gateway/upstreamhttp.py) against scripted servers on loopback:
answers whole or early, connections kept and replaced, and every way an answer can go wrong
reported as an error, never guessed at."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager

import pytest
import uvicorn

from gateway.upstreamhttp import (
    IDLE_SECONDS,
    UpstreamConnectError,
    UpstreamHTTP,
    UpstreamHTTPError,
)
from tests.mcp_upstream import free_port

pytestmark = pytest.mark.anyio

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
SSE_EVENT = b'event: message\r\ndata: {"id": "r-1", "result": {}}\r\n\r\n'


def chunk(data: bytes) -> bytes:
    return b"%x\r\n" % len(data) + data + b"\r\n"


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return head + await reader.readexactly(length)


def json_answer(body: bytes, status: bytes = b"200 OK") -> bytes:
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n" % len(body) + body
    )


class Server:
    """Serves each connection with `script`, and counts the connections."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.script(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def serving(script: Script) -> AsyncIterator[tuple[Server, str]]:
    server = Server(script)
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        yield server, f"http://127.0.0.1:{port}/mcp"
    finally:
        listener.close()


def answering(answer: Callable[[int], bytes], requests: list[bytes]) -> Script:
    """A script that answers the n-th request (from 1, over all connections) with answer(n)."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            requests.append(await read_request(reader))
            writer.write(answer(len(requests)))
            await writer.drain()

    return script


async def test_answers_come_back_whole_on_one_kept_connection() -> None:
    requests: list[bytes] = []
    async with serving(answering(lambda n: json_answer(b'{"n": %d}' % n), requests)) as (
        server,
        url,
    ):
        client = UpstreamHTTP(url)
        first = await client.post(b'{"a": 1}', {"content-type": "application/json"})
        second = await client.post(b'{"a": 2}', {"content-type": "application/json"})
        client.close()
    assert (first.status, first.media_type, first.body) == (200, "application/json", b'{"n": 1}')
    assert second.body == b'{"n": 2}'
    assert server.connections == 1
    assert requests[0].startswith(b"POST /mcp HTTP/1.1\r\nhost: 127.0.0.1:")
    assert requests[0].endswith(b'content-length: 8\r\n\r\n{"a": 1}')


async def test_a_streamed_answer_is_taken_early_and_its_connection_kept_once_it_ends() -> None:
    stream_ends = asyncio.Event()

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                b"transfer-encoding: chunked\r\n\r\n" + chunk(SSE_EVENT)
            )
            await stream_ends.wait()  # the answer is out; the stream is not over
            writer.write(b"0\r\n\r\n")
            stream_ends.clear()

    def enough(headers: Mapping[str, str], body: bytes) -> bool:
        return headers.get("content-type") == "text/event-stream" and b'"r-1"' in body

    async with serving(script) as (server, url):
        client = UpstreamHTTP(url)
        answer = await asyncio.wait_for(client.post(b"{}", {}, enough=enough), 5)
        assert answer.body == SSE_EVENT
        stream_ends.set()
        await asyncio.sleep(0.2)  # the stream's end comes in, the connection is free again
        again = await asyncio.wait_for(client.post(b"{}", {}, enough=enough), 5)
        stream_ends.set()
        client.close()
    assert again.body == SSE_EVENT
    assert server.connections == 1


async def test_a_connection_the_server_closed_while_idle_is_replaced() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(json_answer(b"{}"))
        await writer.drain()  # then the server closes it (as uvicorn does after 5 s idle)

    async with serving(script) as (server, url):
        client = UpstreamHTTP(url)
        await client.post(b"{}", {})
        await asyncio.sleep(0.1)
        answer = await client.post(b"{}", {})
        client.close()
    assert answer.status == 200
    assert server.connections == 2


async def test_no_upstream_listening_is_a_connect_error() -> None:
    port = free_port()  # free a moment ago: nothing listens on it
    with pytest.raises(UpstreamConnectError, match="cannot connect to"):
        await UpstreamHTTP(f"http://127.0.0.1:{port}/mcp", connect_timeout=5).post(b"{}", {})


async def closes_mid_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    writer.write(b'HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{"partial":')


async def not_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    writer.write(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
    await asyncio.sleep(1)


async def too_large(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 4096\r\n\r\n" + b"x" * 4096)
    await asyncio.sleep(1)


async def never_answers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    await asyncio.sleep(5)


async def closes_before_answering(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    await read_request(reader)


@pytest.mark.parametrize(
    ("script", "reason"),
    [
        (closes_mid_answer, "lost|closed"),
        (closes_before_answering, "lost|closed"),
        (not_http, "not HTTP/1.1"),
        (too_large, "over 1024 bytes"),
        (never_answers, "within 0.3s"),
    ],
)
async def test_an_answer_that_never_comes_whole_is_an_error(script: Script, reason: str) -> None:
    async with serving(script) as (_, url):
        client = UpstreamHTTP(url, read_timeout=0.3, max_answer_bytes=1024)
        with pytest.raises(UpstreamHTTPError, match=reason):
            await asyncio.wait_for(client.post(b"{}", {}), 5)
        client.close()


async def test_a_failed_connection_is_not_used_again() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        if server_ref[0].connections == 1:
            writer.write(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
            await asyncio.sleep(1)
            return
        writer.write(json_answer(b"{}"))
        await writer.drain()

    server_ref: list[Server] = []
    async with serving(script) as (server, url):
        server_ref.append(server)
        client = UpstreamHTTP(url)
        with pytest.raises(UpstreamHTTPError):
            await client.post(b"{}", {})
        assert (await client.post(b"{}", {})).status == 200
        client.close()
    assert server.connections == 2


@pytest.mark.parametrize(
    "headers",
    [{"x-trace": "a\r\nx-injected: 1"}, {"x-trace\r\nx-injected": "1"}, {"x": "a\nb"}],
)
async def test_a_header_cannot_smuggle_another_line(headers: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="line break"):
        await UpstreamHTTP("http://127.0.0.1:9/mcp").post(b"{}", headers)


@pytest.mark.parametrize(
    "url", ["https://qc-mcp:8000/mcp", "qc-mcp:8000/mcp", "http:///mcp", "http://qc-mcp/mcp?x=1"]
)
def test_only_a_plain_http_upstream_url_is_taken(url: str) -> None:
    with pytest.raises(ValueError, match="expected http://host"):
        UpstreamHTTP(url)


async def test_concurrent_posts_beyond_the_connection_cap_wait_their_turn() -> None:
    in_flight = 0
    most = 0

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal in_flight, most
        while True:
            await read_request(reader)
            in_flight += 1
            most = max(most, in_flight)
            await asyncio.sleep(0.05)
            in_flight -= 1
            writer.write(json_answer(b"{}"))
            await writer.drain()

    async with serving(script) as (server, url):
        client = UpstreamHTTP(url, max_connections=2, max_idle=2)
        answers = await asyncio.gather(*(client.post(b"{}", {}) for _ in range(6)))
        client.close()
    assert [a.status for a in answers] == [200] * 6
    assert most == 2
    assert server.connections == 2


async def test_a_connection_unused_for_a_while_is_let_go_before_upstream_closes_it() -> None:
    requests: list[bytes] = []
    async with serving(answering(lambda n: json_answer(b"{}"), requests)) as (server, url):
        client = UpstreamHTTP(url, idle_seconds=0.1)
        await client.post(b"{}", {})
        await asyncio.sleep(0.2)
        await client.post(b"{}", {})
        client.close()
    assert server.connections == 2
    # qc-mcp serves on uvicorn, which closes a connection unused for its keep-alive time.
    assert uvicorn.Config(app=None).timeout_keep_alive > IDLE_SECONDS
