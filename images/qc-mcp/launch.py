"""Starts the unmodified QuantConnect MCP server: credentials from secret files, traced by OTel.

The server reads QUANTCONNECT_USER_ID and QUANTCONNECT_API_TOKEN from its environment at import
time. They are set here, inside this one process, so they never appear in the container's
configuration or in /proc/<pid>/environ (which shows only the environment given at exec) (SEC-01).

Tracing (OBS-01) is OpenTelemetry's zero-code instrumentation, started here before the server is
imported (what `opentelemetry-instrument` does, without a second exec): the Starlette/ASGI
instrumentation for its inbound HTTP, httpx for its calls to the QuantConnect API, configured by
the OTEL_* variables compose sets. One addition, since the server handles each MCP request in its
session's task and not in the HTTP request's: a span per MCP request whose parent is the W3C trace
context the gateway puts into the request's `params._meta`, so the httpx spans of a tool call are
children of the gateway's span. Nothing of the server's code changes.
"""

import os
import runpy
import sys
from typing import Any

SECRET_FILES = {
    "QUANTCONNECT_USER_ID": "/run/secrets/qc_user_id",
    "QUANTCONNECT_API_TOKEN": "/run/secrets/qc_api_token",
}
# Variables that would make the HTTP instrumentations copy request or response headers
# (Authorization among them) into span attributes (OBS-02): refused, whatever their value.
HEADER_CAPTURE_PREFIX = "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_"
# The only exporter that keeps spans inside the stack: OTLP to its collector, which redacts. The
# console exporter would write unredacted spans into the container's log.
TRACES_EXPORTERS = {"otlp", "none"}
TRACE_CONTEXT_KEYS = ("traceparent", "tracestate")


def read_secret(name: str, path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            value = handle.read().strip()
    except OSError as error:
        sys.exit(
            f"qc-mcp: cannot read secret {name} from {path} ({error.strerror}); "
            "mount it as a Docker secret readable by uid 10001"
        )
    if not value:
        sys.exit(f"qc-mcp: secret {name} in {path} is empty; write the credential into it")
    return value


def tracing_enabled(environ: dict[str, str]) -> bool:
    """Whether to trace: OTEL_TRACES_EXPORTER=otlp with an endpoint set. Refuses (exits) settings
    that would put headers into spans or send spans anywhere but an OTLP endpoint."""
    capture = sorted(name for name in environ if name.startswith(HEADER_CAPTURE_PREFIX))
    if capture:
        sys.exit(
            f"qc-mcp: {', '.join(capture)} set: HTTP headers (credentials among them) must not "
            "become span attributes; unset them"
        )
    exporter = environ.get("OTEL_TRACES_EXPORTER", "none").strip().lower()
    if exporter not in TRACES_EXPORTERS:
        sys.exit(
            f"qc-mcp: OTEL_TRACES_EXPORTER={exporter!r}: only 'otlp' (to the stack's collector, "
            "which redacts) or 'none'"
        )
    if exporter == "none" or environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if not (
        environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    ):
        sys.exit(
            "qc-mcp: OTEL_TRACES_EXPORTER=otlp without OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "
            "name the collector (http://otel-collector:4318/v1/traces)"
        )
    return True


def trace_context(meta: Any) -> dict[str, str]:
    """The W3C trace context fields of a request's `params._meta`, and nothing else of it."""
    extra = getattr(meta, "model_extra", None) or {}
    return {key: extra[key] for key in TRACE_CONTEXT_KEYS if isinstance(extra.get(key), str)}


def request_span(req: Any, request_id: object) -> tuple[str, dict[str, str]]:
    """The span name and attributes of one MCP request: method and tool name, never arguments."""
    method = str(getattr(req, "method", "") or "unknown")
    attributes = {"mcp.method.name": method, "jsonrpc.request.id": str(request_id)}
    tool = getattr(getattr(req, "params", None), "name", None)
    if method == "tools/call" and isinstance(tool, str):
        attributes |= {"gen_ai.tool.name": tool, "gen_ai.operation.name": "execute_tool"}
        return f"{method} {tool}", attributes
    return method, attributes


def trace_mcp_requests() -> None:
    """Runs each MCP request the server handles in a span of its own, whose parent is the trace
    context in the request's `_meta`, or none (never the session's first HTTP request)."""
    from mcp.server.lowlevel import server as lowlevel
    from opentelemetry import context, propagate, trace

    tracer = trace.get_tracer("qcstack.qc-mcp.launch")
    handle = lowlevel.Server._handle_request

    async def traced(self: Any, message: Any, req: Any, *args: Any, **kwargs: Any) -> Any:
        parent = propagate.extract(trace_context(message.request_meta), context=context.Context())
        name, attributes = request_span(req, message.request_id)
        with tracer.start_as_current_span(
            name, context=parent, kind=trace.SpanKind.SERVER, attributes=attributes
        ):
            return await handle(self, message, req, *args, **kwargs)

    lowlevel.Server._handle_request = traced  # type: ignore[method-assign]


def start_tracing() -> None:
    if not tracing_enabled(dict(os.environ)):
        return
    from opentelemetry.instrumentation.auto_instrumentation import initialize

    initialize()
    trace_mcp_requests()


def main() -> None:
    leaked = sorted(name for name in SECRET_FILES if name in os.environ)
    if leaked:
        sys.exit(f"qc-mcp: {', '.join(leaked)} set in the environment; pass only secret files")
    start_tracing()
    for name, path in SECRET_FILES.items():
        os.environ[name] = read_secret(name, path)
    sys.argv = ["quantconnect-mcp-server"]
    runpy.run_module("main", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
