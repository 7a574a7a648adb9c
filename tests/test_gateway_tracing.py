"""The gateway's spans (gateway/tracing.py, fastlane.py, calls.py): one trace per tool call,
with the MCP semantic conventions' attributes, passed upstream, no secret, never waited for."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import httpx2
import pytest
from fastmcp import Client
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from gateway.settings import GatewaySettings
from gateway.tracing import SpanQueue, Tracing
from tests.mcp_upstream import (
    MCP_HEADERS,
    Upstream,
    gateway_settings,
    open_session,
    serve_gateway,
)

pytestmark = pytest.mark.anyio
TOKEN = "tracing-test-token-0123456789abcdef"  # noqa: S105 -- a test token
BROKERAGE_SECRET = "tracing-canary-brokerage-password"  # noqa: S105 -- a canary


@pytest.fixture(scope="module")
def recorded() -> InMemorySpanExporter:
    """Every span of this process, from here on (the global provider can be set only once)."""
    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


@pytest.fixture
def spans(recorded: InMemorySpanExporter) -> Iterator[InMemorySpanExporter]:
    recorded.clear()
    yield recorded


@pytest.fixture
def settings(upstream: Upstream, tmp_path: Path) -> GatewaySettings:
    return gateway_settings(upstream, tmp_path, BROKERAGE_SECRET)


@pytest.fixture
async def gateway(settings: GatewaySettings) -> AsyncIterator[str]:
    async with serve_gateway(settings, TOKEN) as url:
        yield url


def named(spans: Sequence[ReadableSpan], name: str, kind: SpanKind) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name and s.kind is kind and s.attributes is not None]


async def call_read_account(gateway: str, tag: str) -> None:
    async with Client(gateway, auth=TOKEN, mode="legacy") as client:
        await client.call_tool("read_account", {"model": {"tag": tag}})


async def test_a_tool_call_is_one_trace_from_the_gateway_to_upstream(
    gateway: str, upstream: Upstream, spans: InMemorySpanExporter, settings: GatewaySettings
) -> None:
    await call_read_account(gateway, "traced")
    finished = spans.get_finished_spans()
    (server,) = [
        s
        for s in named(finished, "tools/call read_account", SpanKind.SERVER)
        if s.instrumentation_scope is not None and s.instrumentation_scope.name == "qcstack.gateway"
    ]
    assert server.attributes is not None
    assert {k: server.attributes.get(k) for k in ("mcp.method.name", "gen_ai.tool.name")} == {
        "mcp.method.name": "tools/call",
        "gen_ai.tool.name": "read_account",
    }
    assert server.attributes["gen_ai.operation.name"] == "execute_tool"
    assert server.attributes["jsonrpc.request.id"] and server.attributes["mcp.session.id"]
    trace_id = server.context.trace_id
    children = {
        (s.name, s.kind)
        for s in finished
        if s.parent is not None and s.parent.span_id == server.context.span_id
    }
    assert ("qcstack.policy", SpanKind.INTERNAL) in children
    assert ("tools/call read_account", SpanKind.CLIENT) in children
    (client_span,) = [
        s for s in named(finished, "tools/call read_account", SpanKind.CLIENT)
        if s.parent is not None and s.parent.span_id == server.context.span_id
    ]  # fmt: skip
    # Upstream got the client span as its parent, in the HTTP header and in params._meta
    # (FastMCP upstream reads the latter: its own server span continues the trace).
    traceparent = f"00-{trace_id:032x}-{client_span.context.span_id:016x}-"
    assert upstream.headers[-1].get("traceparent", "").startswith(traceparent)
    continued = [
        s for s in finished
        if s.kind is SpanKind.SERVER and s.parent is not None
        and s.parent.span_id == client_span.context.span_id
    ]  # fmt: skip
    assert continued, "upstream's span is not a child of the gateway's upstream call"
    audit = (settings.state_dir / "audit.jsonl").read_text().splitlines()
    assert {json.loads(line)["trace"] for line in audit} == {f"{trace_id:032x}"}


async def test_a_refused_call_is_marked_refused_and_goes_nowhere(
    gateway: str, spans: InMemorySpanExporter
) -> None:
    async with Client(gateway, auth=TOKEN, mode="legacy") as client:
        await client.call_tool("create_live_algorithm", {}, raise_on_error=False)
    finished = spans.get_finished_spans()
    (server,) = named(finished, "tools/call create_live_algorithm", SpanKind.SERVER)
    assert server.attributes is not None and server.attributes["error.type"] == "refused"
    assert not [s for s in finished if s.parent and s.parent.span_id == server.context.span_id
                and s.kind is SpanKind.CLIENT]  # fmt: skip


async def test_spans_carry_no_argument_and_no_stored_secret(
    gateway: str, spans: InMemorySpanExporter
) -> None:
    await call_read_account(gateway, BROKERAGE_SECRET)
    exported = [s.to_json() for s in spans.get_finished_spans()]
    assert exported
    assert not [text for text in exported if BROKERAGE_SECRET in text]
    assert not [text for text in exported if '"tag"' in text]


async def test_a_client_trace_context_is_continued(
    gateway: str, spans: InMemorySpanExporter
) -> None:
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    headers = {"authorization": f"Bearer {TOKEN}", **MCP_HEADERS}
    async with httpx2.AsyncClient() as http:
        session = (await open_session(http, gateway, headers)).headers["mcp-session-id"]
        params = {"name": "read_account", "arguments": {}, "_meta": {"traceparent": parent}}
        call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}
        answer = await http.post(gateway, json=call, headers={**headers, "mcp-session-id": session})
    assert answer.status_code == 200
    servers = named(spans.get_finished_spans(), "tools/call read_account", SpanKind.SERVER)
    assert 0x0AF7651916CD43DD8448EB211C80319C in {s.context.trace_id for s in servers}


class FailingExporter(SpanExporter):
    def __init__(self) -> None:
        self.batches = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.batches += 1
        return SpanExportResult.FAILURE

    def shutdown(self) -> None:
        return None


class StuckExporter(SpanExporter):
    """A collector that never answers: export blocks until released."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.release.wait(10)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.release.set()


def ended_spans(provider: TracerProvider, count: int) -> float:
    """Ends `count` spans; returns the slowest end, in seconds."""
    tracer = provider.get_tracer("test")
    slowest = 0.0
    for n in range(count):
        span = tracer.start_span(f"span-{n}")
        started = time.perf_counter()
        span.end()
        slowest = max(slowest, time.perf_counter() - started)
    return slowest


def test_spans_the_collector_refuses_are_dropped_and_counted() -> None:
    exporter = FailingExporter()
    queue = SpanQueue(exporter, capacity=100)
    provider = TracerProvider()
    provider.add_span_processor(queue)
    ended_spans(provider, 10)
    queue.force_flush()
    assert queue.dropped == 10 and exporter.batches >= 1
    provider.shutdown()


def test_a_stuck_collector_never_holds_up_a_span_and_overflow_is_counted() -> None:
    exporter = StuckExporter()
    queue = SpanQueue(exporter, capacity=50)
    provider = TracerProvider()
    provider.add_span_processor(queue)
    slowest = ended_spans(provider, 300)
    assert slowest < 0.5  # never waits for the exporter (a generous bound for a busy machine)
    assert queue.dropped >= 300 - 50 - 256  # all beyond the queue, less what a batch took
    exporter.release.set()
    provider.shutdown()


def test_no_endpoint_means_no_spans_are_sent() -> None:
    tracing = Tracing.start("")
    assert tracing.queue is None and tracing.dropped == 0
    assert not tracing.tracer.start_span("nothing").is_recording()


async def test_health_shows_the_dropped_span_count(gateway: str) -> None:
    async with httpx2.AsyncClient() as http:
        health = (await http.get(gateway.removesuffix("/mcp") + "/healthz")).json()
    assert health["spans_dropped"] == 0
