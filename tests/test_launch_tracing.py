"""qc-mcp's launcher: tracing starts only as configured, refuses header capture and exporters
that bypass the collector, and takes only the trace context from a request's `_meta`."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest
from pydantic import BaseModel, ConfigDict

LAUNCHER = Path(__file__).resolve().parent.parent / "images" / "qc-mcp" / "launch.py"
TRACED = {
    "OTEL_TRACES_EXPORTER": "otlp",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://otel-collector:4318/v1/traces",
}


def load_launcher() -> ModuleType:
    spec = importlib.util.spec_from_file_location("qcstack_launch_tracing", LAUNCHER)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Meta(BaseModel):
    """Shaped like mcp.types.RequestParams.Meta: extra fields allowed."""

    model_config = ConfigDict(extra="allow")
    progressToken: str | None = None


def test_compose_settings_turn_tracing_on() -> None:
    assert load_launcher().tracing_enabled(TRACED) is True


@pytest.mark.parametrize(
    "environ",
    [{}, {"OTEL_TRACES_EXPORTER": "none"}, {**TRACED, "OTEL_SDK_DISABLED": "true"}],
)
def test_tracing_stays_off_unless_asked(environ: dict[str, str]) -> None:
    assert load_launcher().tracing_enabled(environ) is False


@pytest.mark.parametrize(
    "header",
    [
        "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_REQUEST",
        "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST",
        "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS",
    ],
)
def test_header_capture_into_spans_is_refused(header: str) -> None:
    with pytest.raises(SystemExit, match=header):
        load_launcher().tracing_enabled({**TRACED, header: "authorization"})


@pytest.mark.parametrize("exporter", ["console", "zipkin", "otlp,console"])
def test_exporter_that_bypasses_the_redacting_collector_is_refused(exporter: str) -> None:
    with pytest.raises(SystemExit, match="only 'otlp'"):
        load_launcher().tracing_enabled({**TRACED, "OTEL_TRACES_EXPORTER": exporter})


def test_otlp_without_an_endpoint_is_refused_rather_than_sent_to_a_default() -> None:
    with pytest.raises(SystemExit, match="OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        load_launcher().tracing_enabled({"OTEL_TRACES_EXPORTER": "otlp"})


def test_only_the_trace_context_is_taken_from_a_requests_meta() -> None:
    meta = Meta(
        progressToken="7",
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        tracestate="qc=1",
        authorization="Basic c2VjcmV0",
    )
    assert load_launcher().trace_context(meta) == {
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "tracestate": "qc=1",
    }


@pytest.mark.parametrize("meta", [None, Meta(), Meta(traceparent=["not", "a", "string"])])
def test_request_without_a_usable_trace_context_starts_its_own_trace(meta: Meta | None) -> None:
    assert load_launcher().trace_context(meta) == {}


def test_tool_call_span_names_the_tool_and_never_its_arguments() -> None:
    request = SimpleNamespace(
        method="tools/call",
        params=SimpleNamespace(name="create_live_algorithm", arguments={"password": "canary"}),
    )
    name, attributes = load_launcher().request_span(request, 12)
    assert name == "tools/call create_live_algorithm"
    assert attributes == {
        "mcp.method.name": "tools/call",
        "jsonrpc.request.id": "12",
        "gen_ai.tool.name": "create_live_algorithm",
        "gen_ai.operation.name": "execute_tool",
    }


def test_other_requests_are_named_by_their_method() -> None:
    name, attributes = load_launcher().request_span(SimpleNamespace(method="tools/list"), "a")
    assert name == "tools/list"
    assert attributes == {"mcp.method.name": "tools/list", "jsonrpc.request.id": "a"}
