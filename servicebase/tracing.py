"""A service's traces: spans exported to the collector off the request path, drops counted.

A request (a tool call at the gateway, an alert at the responder) must never wait for telemetry:
spans go into a bounded queue that a background thread sends to the collector over OTLP/HTTP.
When the queue is full, or the collector does not take a batch, those spans are dropped and
counted (`/healthz` shows the count); the request goes on as before. Spans carry names, ids and
outcomes, never a tool's arguments or answer.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any, Self

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

logger = logging.getLogger("qcstack.tracing")

BATCH_SIZE = 256
SEND_EVERY_SECONDS = 1.0
WARN_EVERY_SECONDS = 60.0
W3C_KEYS = ("traceparent", "tracestate")


class SpanQueue(SpanProcessor):
    """Ended spans, queued up to `capacity` and sent by a background thread in batches."""

    def __init__(self, exporter: SpanExporter, capacity: int) -> None:
        self.exporter = exporter
        self.capacity = capacity
        self.dropped = 0
        self._queue: collections.deque[ReadableSpan] = collections.deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._warned = 0.0
        self._thread = threading.Thread(target=self._run, name="qcstack-spans", daemon=True)
        self._thread.start()

    def on_start(self, span: Any, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        with self._lock:
            if len(self._queue) >= self.capacity:
                self.dropped += 1
                return
            self._queue.append(span)
            full = len(self._queue) >= BATCH_SIZE
        if full:
            self._wake.set()

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(SEND_EVERY_SECONDS)
            self._wake.clear()
            self._send_all()

    def _send_all(self) -> None:
        while True:
            with self._lock:
                batch = [self._queue.popleft() for _ in range(min(BATCH_SIZE, len(self._queue)))]
            if not batch:
                return
            try:
                result = self.exporter.export(batch)
            except Exception:  # an exporter's bug must not end the thread
                result = SpanExportResult.FAILURE
            if result is not SpanExportResult.SUCCESS:
                with self._lock:
                    self.dropped += len(batch)
                self._warn()
                return  # try the rest on the next round

    def _warn(self) -> None:
        now = time.monotonic()
        if now - self._warned >= WARN_EVERY_SECONDS:
            self._warned = now
            logger.warning("the collector took no spans; %d dropped so far", self.dropped)

    def shutdown(self) -> None:
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout=5)
        self._send_all()
        self.exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        self._send_all()
        return True


class Tracing:
    """A service's tracer and its queue (None when no collector endpoint is set). Each service
    names itself in a subclass: its resource's service.name and its tracer's name."""

    service_name = "qcstack"
    tracer_name = "qcstack"

    def __init__(self, queue: SpanQueue | None, provider: TracerProvider | None) -> None:
        self.queue = queue
        self.provider = provider
        self.tracer = (provider or trace.NoOpTracerProvider()).get_tracer(self.tracer_name)

    @classmethod
    def start(cls, endpoint: str, *, capacity: int = 4096, timeout: float = 2.0) -> Self:
        """Exports to `endpoint` (an OTLP/HTTP traces URL); an empty one traces nothing. The
        provider becomes the global one, so a framework's own spans (FastMCP's) go the same way."""
        if not endpoint:
            return cls(None, None)
        queue = SpanQueue(OTLPSpanExporter(endpoint=endpoint, timeout=timeout), capacity)
        provider = TracerProvider(resource=Resource({"service.name": cls.service_name}))
        provider.add_span_processor(queue)
        trace.set_tracer_provider(provider)
        return cls(queue, provider)

    @property
    def dropped(self) -> int:
        return self.queue.dropped if self.queue is not None else 0

    def shutdown(self) -> None:
        if self.provider is not None:
            self.provider.shutdown()


def context_from_meta(meta: object) -> Context | None:
    """The caller's trace context from a request's `params._meta` (W3C traceparent), if any."""
    if not isinstance(meta, Mapping):
        return None
    carrier = {key: meta[key] for key in W3C_KEYS if isinstance(meta.get(key), str)}
    return propagate.extract(carrier) if carrier else None


def current_carrier() -> dict[str, str]:
    """The current span's context as W3C headers (traceparent, tracestate)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def current_trace_id() -> str | None:
    """The current trace's id in hex, for the audit log (None outside a recorded trace)."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


def set_error(span: trace.Span, error_type: str) -> None:
    """Marks the span failed, with the semantic conventions' error.type and no message."""
    span.set_attribute("error.type", error_type)
    span.set_status(trace.Status(trace.StatusCode.ERROR))
