"""How every service of ours runs (servicebase/serving.py): log lines written off the request
path and none lost, and a SIGTERM that ends the process through its `finally` blocks."""

from __future__ import annotations

import io
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from servicebase.serving import background_logging
from tests.mcp_upstream import free_port

REPO_ROOT = Path(__file__).resolve().parent.parent

SERVICE = """
import logging, sys
from servicebase.serving import background_logging, serve

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while (message := await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    length = [(b"content-length", b"2")]
    await send({"type": "http.response.start", "status": 200, "headers": length})
    await send({"type": "http.response.body", "body": b"ok"})

with background_logging():
    try:
        serve(app, "127.0.0.1", int(sys.argv[1]))
    finally:
        for n in range(200):
            logging.getLogger("test").info("line %d after the server stopped", n)
        print("finally ran", flush=True)
"""


def wait_listening(port: int, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError("the service never listened")


@contextmanager
def service() -> Iterator[tuple[int, subprocess.Popen[str]]]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", SERVICE, str(port)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    try:
        wait_listening(port, process)
        yield port, process
    finally:
        process.kill()
        process.communicate()


def test_sigterm_stops_a_service_through_its_finally_blocks_with_no_log_line_lost() -> None:
    with service() as (_, process):
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=20)
    assert process.returncode == 0, stderr
    assert stdout == "finally ran\n"
    lines = [line for line in stderr.splitlines() if "after the server stopped" in line]
    assert lines == [f"INFO: line {n} after the server stopped" for n in range(200)]


def read_answer(client: socket.socket) -> bytes:
    answer = b""
    while not answer.endswith(b"\r\n\r\nok"):
        data = client.recv(4096)
        assert data, f"the server closed the connection after {answer!r}"
        answer += data
    return answer


def test_a_client_connection_unused_longer_than_clients_keep_theirs_stays_open() -> None:
    request = b"GET / HTTP/1.1\r\nhost: service\r\n\r\n"
    with service() as (port, _), socket.create_connection(("127.0.0.1", port)) as client:
        client.settimeout(10)
        client.sendall(request)
        assert read_answer(client).startswith(b"HTTP/1.1 200")
        time.sleep(6)  # httpx's keep-alive expiry is 5 s, and so was uvicorn's
        client.sendall(request)
        assert read_answer(client).startswith(b"HTTP/1.1 200")


class ThreadNotingStream(io.StringIO):
    """A stream that notes which thread wrote to it."""

    def __init__(self) -> None:
        super().__init__()
        self.writers: set[str] = set()

    def write(self, text: str) -> int:
        self.writers.add(threading.current_thread().name)
        return super().write(text)


def test_a_log_line_is_written_by_another_thread_than_the_one_logging(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream = ThreadNotingStream()
    monkeypatch.setattr(sys, "stderr", stream)
    handlers = logging.getLogger().handlers[:]
    with background_logging():
        logging.getLogger("test").info("written %s", "elsewhere")
    assert stream.getvalue() == "INFO: written elsewhere\n"
    assert stream.writers and threading.current_thread().name not in stream.writers
    assert logging.getLogger().handlers == handlers  # as it was before
