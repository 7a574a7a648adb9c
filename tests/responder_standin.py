"""The responder's unit tests' parts: a stand-in of the gateway's engage endpoint and health
check on 127.0.0.1, a responder running in-process on a test client, and Falco's alert."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from responder.app import Responder, build_app
from responder.lockdown import LockdownCaller
from responder.repeats import Repeats
from responder.settings import ResponderSettings
from responder.tracing import ResponderTracing
from servicebase.audit import AuditLog

TOKEN = b"unit-responder-token-0123456789"


class StandInGateway(ThreadingHTTPServer):
    """Answers POST /admin/api/lockdown/engage with the next scripted status (200 at the end),
    which locks it, and GET /healthz with its lockdown state as the gateway does (or with
    `health_answer`, a broken one); keeps what each request carried. A test lifts lockdown as an
    admin would by setting `locked` to False."""

    def __init__(self, statuses: list[int]) -> None:
        super().__init__(("127.0.0.1", 0), EngageHandler)
        self.statuses = statuses
        self.requests: list[dict[str, Any]] = []
        """The engage calls."""
        self.locked = False
        self.engage_delay = 0.0
        """How long an engage call takes."""
        self.health_answer: tuple[int, bytes] | None = None
        self.checks: list[float] = []
        """When each GET /healthz came (time.monotonic)."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class EngageHandler(BaseHTTPRequestHandler):
    server: StandInGateway

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        time.sleep(self.server.engage_delay)
        self.server.requests.append(
            {"path": self.path, "headers": dict(self.headers), "body": json.loads(body)}
        )
        status = self.server.statuses.pop(0) if self.server.statuses else 200
        if status == 200:
            self.server.locked = True
        self.answer(status, json.dumps({"locked": status == 200, "by": "responder"}).encode())

    def do_GET(self) -> None:
        self.server.checks.append(time.monotonic())
        state = {"ok": True, "lockdown": self.server.locked, "spans_dropped": 0}
        status, answer = self.server.health_answer or (200, json.dumps(state).encode())
        self.answer(status if self.path == "/healthz" else 404, answer)

    def answer(self, status: int, answer: bytes) -> None:
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: Any) -> None:
        return None


def make_settings(tmp_path: Path, gateway_url: str, **more: Any) -> ResponderSettings:
    values: dict[str, Any] = {
        "gateway_url": gateway_url,
        "state_dir": tmp_path,
        "retry_first_seconds": 0.01,
        "retry_max_seconds": 0.02,
        "retry_attempts": 3,
        "call_timeout_seconds": 1.0,
        **more,
    }
    return ResponderSettings(**values)


class Running:
    def __init__(self, settings: ResponderSettings) -> None:
        self.settings = settings
        self.audit = AuditLog(settings.audit_path)
        self.caller = LockdownCaller(settings, TOKEN, self.audit.append)
        self.responder = Responder(
            settings,
            self.audit,
            self.caller,
            Repeats(settings.suppress_seconds),
            ResponderTracing.start(""),
        )
        self.client = TestClient(build_app(self.responder))

    def entries(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.settings.audit_path.read_text().splitlines()]

    def post(self, document: Any, **headers: str) -> Any:
        return self.client.post(
            "/alerts",
            content=json.dumps(document).encode(),
            headers={"content-type": "application/json", **headers},
        )


@contextmanager
def serving_stand_in() -> Iterator[StandInGateway]:
    """A stand-in gateway answering on a thread of its own, for as long as the block runs."""
    stand_in = StandInGateway([])
    thread = threading.Thread(target=stand_in.serve_forever, daemon=True)
    thread.start()
    try:
        yield stand_in
    finally:
        stand_in.shutdown()
        stand_in.server_close()


@contextmanager
def running_responder(tmp_path: Path, gateway: StandInGateway) -> Iterator[Running]:
    """A responder whose gateway is `gateway`; its caller stopped and audit log closed after."""
    started = Running(make_settings(tmp_path, gateway.url))
    try:
        yield started
    finally:
        started.caller.stop()
        started.audit.close()


def alert(
    priority: str = "Critical",
    tags: tuple[str, ...] = ("qcstack", "DET-01"),
    container: str = "qcstack-qc-mcp-1",
) -> dict[str, Any]:
    return {
        "rule": "qcstack unexpected process",
        "priority": priority,
        "output": "Critical unexpected process",
        "output_fields": {"container.name": container, "proc.name": "sh"},
        "source": "syscall",
        "tags": list(tags),
        "time": "2026-12-06T10:20:05.408091526Z",
        "hostname": "vm",
        "uuid": "5b9b6a8e-4a57-4a0b-9a43-9b0b4e0c1a7d",
    }


def wait_until(condition: Any, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True
