"""OBS controls: qc-mcp's calls traced into the stack's collector, redacted, isolated, never in
the way of a tool call."""

from __future__ import annotations

import json
import secrets
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from infra_tests.conftest import (
    PROBES,
    Container,
    StackContainers,
    double_records,
    gateway_audit,
    gateway_session,
    mcp_session,
    stack_network,
)
from infra_tests.dockerhost import DockerHost
from stack.settings import Settings
from stack.testdata import CANARY_API_TOKEN, CANARY_BROKERAGE_PASSWORD
from stack.traces import Span, container_trace_lines, parse_lines, render, trees

COLLECTOR = "otel-collector"
TRACES = "/var/lib/otelcol/traces.jsonl"
COLLECTOR_UID = "10006:10006"
SPAN_KIND_SERVER, SPAN_KIND_CLIENT = 2, 3
MASKED = "****"
QC_MCP_TRACING = {
    "OTEL_SERVICE_NAME": "qc-mcp",
    "OTEL_TRACES_EXPORTER": "otlp",
    "OTEL_METRICS_EXPORTER": "none",
    "OTEL_LOGS_EXPORTER": "none",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://otel-collector:4318/v1/traces",
    "OTEL_PROPAGATORS": "tracecontext",
}
"""qc-mcp's tracing settings as compose gives them: traces only, to the collector."""
GATEWAY_SPAN_ATTRIBUTES = {
    "mcp.method.name": "tools/call",
    "gen_ai.tool.name": "read_account",
    "gen_ai.operation.name": "execute_tool",
}
"""The OpenTelemetry MCP semantic conventions' attributes of the gateway's span for a call."""
CALLS: list[tuple[str, dict[str, Any]]] = [("read_account", {}), ("list_projects", {})]


def flatten(text: str) -> list[Span]:
    """Every span of the file exporter's JSON lines (stack/traces.py reads them for
    `qcstack traces`, the same way)."""
    return parse_lines(text.splitlines())


def read_traces(docker: DockerHost, project: str, image: str) -> str:
    """The collector's file output, read from its volume by a throwaway container (so it can be
    read with the collector stopped), as the collector's uid."""
    read = "import os, sys; p = sys.argv[1]; print(open(p).read() if os.path.exists(p) else '')"
    return docker.check(
        f"docker run --rm --network none --user {COLLECTOR_UID} --read-only --cap-drop ALL "
        "--security-opt no-new-privileges -v %s:/var/lib/otelcol:ro "
        "--entrypoint /usr/bin/python3 %s -c %s %s",
        f"{project}_otel_data",
        image,
        read,
        TRACES,
    )


def wait_for_spans(
    docker: DockerHost,
    project: str,
    image: str,
    found: Callable[[list[Span]], bool],
    seconds: float = 45,
) -> tuple[str, list[Span]]:
    """Reads the file output until `found` holds for its spans (qc-mcp batches for up to 5 s,
    the collector for 2 s, its file exporter flushes each second) or time runs out."""
    deadline = time.monotonic() + seconds
    while True:
        text = read_traces(docker, project, image)
        spans = flatten(text)
        if found(spans) or time.monotonic() > deadline:
            return text, spans
        time.sleep(1)


@dataclass(frozen=True)
class TracedCall:
    """A tool call made with a trace context of the test's own, and what the collector wrote."""

    trace_id: str
    parent_id: str
    result: dict[str, Any]
    spans: list[Span]
    text: str


def traced_call(
    docker: DockerHost, project: str, image: str, tool: str, arguments: dict[str, Any]
) -> TracedCall:
    """Calls a tool of qc-mcp from a client on the mcp network with a fresh W3C traceparent in
    `params._meta`, as the gateway does, and waits for qc-mcp's spans of that trace."""
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    output = docker.check(
        "docker run --rm --network %s --user 10002:10002 --read-only --cap-drop ALL "
        "--security-opt no-new-privileges --entrypoint /usr/bin/python3 %s -c %s %s %s %s %s",
        stack_network(project, "mcp"),
        image,
        (PROBES / "traced_call.py").read_text(),
        "http://qc-mcp:8000/mcp",
        f"00-{trace_id}-{parent_id}-01",
        tool,
        json.dumps(arguments),
    )
    result = json.loads(output.strip().splitlines()[-1])

    def has_client_span(spans: list[Span]) -> bool:
        return any(s.trace_id == trace_id and s.kind == SPAN_KIND_CLIENT for s in spans)

    text, spans = wait_for_spans(docker, project, image, has_client_span)
    return TracedCall(
        trace_id, parent_id, result, [s for s in spans if s.trace_id == trace_id], text
    )


@pytest.fixture(scope="module")
def read_account_traced(docker: DockerHost, project: str, qc_mcp: Container) -> TracedCall:
    return traced_call(docker, project, qc_mcp.attrs["Image"], "read_account", {})


def tool_span(call: TracedCall) -> Span:
    found = [s for s in call.spans if s.name == f"tools/call {call.result['tool']}"]
    assert len(found) == 1, [(s.service, s.name) for s in call.spans]
    return found[0]


# OBS-01 -------------------------------------------------------------------------------------


@pytest.mark.control("OBS-01", "config")
def test_server_sends_traces_only_and_only_to_the_collector(qc_mcp: Container) -> None:
    environment = dict(v.split("=", 1) for v in qc_mcp.attrs["Config"]["Env"])
    assert {k: environment.get(k) for k in QC_MCP_TRACING} == QC_MCP_TRACING
    # The spans go straight to the collector: never through the egress proxy (NET-04).
    assert "otel-collector" in environment.get("NO_PROXY", "").split(",")
    assert environment["HTTPS_PROXY"] == "http://egress-proxy:3128"


@pytest.mark.control("OBS-01", "config")
def test_server_image_holds_the_zero_code_instrumentation_and_its_launcher_starts_it(
    docker: DockerHost, qc_mcp: Container
) -> None:
    # The server's own code is the wheel's, untouched: the launcher is what starts tracing.
    assert qc_mcp.attrs["Config"]["Entrypoint"] == ["/usr/bin/python3", "/app/launch.py"]
    check = (
        "import importlib.metadata as m; print(sorted(e.name for e in "
        "m.entry_points(group='opentelemetry_instrumentor')))"
    )
    found = docker.check("docker exec %s /usr/bin/python3 -c %s", qc_mcp.id, check)
    assert {"httpx", "starlette"} <= set(json.loads(found.strip().replace("'", '"')))


@pytest.mark.control("OBS-01", "behaviour")
def test_tool_call_is_a_span_in_the_callers_trace(read_account_traced: TracedCall) -> None:
    call = read_account_traced
    assert call.result["error"] is False, call.result["text"]
    span = tool_span(call)
    assert span.service == "qc-mcp"
    assert span.kind == SPAN_KIND_SERVER
    assert span.parent_id == call.parent_id, "not a child of the caller's span (params._meta)"
    assert span.attributes["mcp.method.name"] == "tools/call"
    assert span.attributes["gen_ai.tool.name"] == "read_account"


@pytest.mark.control("OBS-01", "behaviour")
def test_api_request_is_a_child_span_of_the_tool_call(
    docker: DockerHost, api_double: Container, read_account_traced: TracedCall
) -> None:
    call = read_account_traced
    clients = [s for s in call.spans if s.kind == SPAN_KIND_CLIENT]
    assert [s.service for s in clients] == ["qc-mcp"]
    (client,) = clients
    assert client.attributes["http.url"] == "https://www.quantconnect.com/api/v2/account/read"
    assert client.attributes["http.method"] == "POST"
    assert client.parent_id == tool_span(call).span_id
    # ... and that request really reached the API double.
    assert any(r["path"] == "/api/v2/account/read" for r in double_records(docker, api_double))


@pytest.mark.control("OBS-01", "behaviour")
def test_spans_never_pass_through_the_egress_proxy(
    docker: DockerHost, egress_proxy: Container, read_account_traced: TracedCall
) -> None:
    # The spans arrived (the fixture waited for them) and the API request went through the
    # proxy; no request to the collector ever did (NO_PROXY), so the allow-list stays as it is.
    assert read_account_traced.spans
    lines = docker.check("docker logs %s 2>/dev/null", egress_proxy.id).splitlines()
    targets = [json.loads(line)["target"] for line in lines if line.startswith("{")]
    assert "www.quantconnect.com:443" in targets
    assert [t for t in targets if "otel-collector" in t or ":4318" in t] == []


@dataclass(frozen=True)
class GatewayTrace:
    """A tool call through the gateway, the trace id its audit entry names, and that trace."""

    trace_id: str
    spans: list[Span]


@pytest.fixture(scope="module")
def read_account_through_the_gateway(
    docker: DockerHost, settings: Settings, project: str, stack_containers: StackContainers
) -> GatewayTrace:
    gateway, image = stack_containers["gateway"], str(stack_containers["qc-mcp"].attrs["Image"])
    before = len(gateway_audit(docker, gateway))
    result = gateway_session(docker, settings, image, [("read_account", {})])
    assert result.calls["read_account"]["error"] is False, result.calls["read_account"]["text"]
    entries = [e for e in gateway_audit(docker, gateway)[before:] if e["tool"] == "read_account"]
    assert entries and len({e.get("trace") for e in entries}) == 1, entries
    trace_id = entries[0]["trace"]

    def reached_the_api(spans: list[Span]) -> bool:
        return any(
            s.trace_id == trace_id and s.service == "qc-mcp" and s.kind == SPAN_KIND_CLIENT
            for s in spans
        )

    _, spans = wait_for_spans(docker, project, image, reached_the_api)
    return GatewayTrace(trace_id, [s for s in spans if s.trace_id == trace_id])


def only(spans: list[Span], **wanted: Any) -> Span:
    found = [s for s in spans if all(getattr(s, k) == v for k, v in wanted.items())]
    assert len(found) == 1, (wanted, [(s.service, s.name, s.kind) for s in spans])
    return found[0]


@pytest.mark.control("OBS-01", "behaviour")
def test_a_call_through_the_gateway_is_one_trace_down_to_the_api_request(
    read_account_through_the_gateway: GatewayTrace,
) -> None:
    spans = read_account_through_the_gateway.spans
    name = "tools/call read_account"
    server = only(spans, service="qcstack-gateway", kind=SPAN_KIND_SERVER, name=name)
    assert {k: server.attributes.get(k) for k in GATEWAY_SPAN_ATTRIBUTES} == GATEWAY_SPAN_ATTRIBUTES
    assert server.attributes["jsonrpc.request.id"] and server.attributes["mcp.session.id"]
    only(spans, service="qcstack-gateway", name="qcstack.policy", parent_id=server.span_id)
    upstream = only(spans, service="qcstack-gateway", kind=SPAN_KIND_CLIENT, name=name)
    assert upstream.parent_id == server.span_id
    qc_mcp = only(spans, service="qc-mcp", kind=SPAN_KIND_SERVER, name=name)
    assert qc_mcp.parent_id == upstream.span_id, "qc-mcp's span is not the gateway call's child"
    api = only(spans, service="qc-mcp", kind=SPAN_KIND_CLIENT)
    assert api.parent_id == qc_mcp.span_id
    assert api.attributes["http.url"] == "https://www.quantconnect.com/api/v2/account/read"


@pytest.mark.control("OBS-01", "behaviour")
def test_qcstack_traces_shows_the_call_as_one_tree(
    docker: DockerHost,
    stack_containers: StackContainers,
    read_account_through_the_gateway: GatewayTrace,
) -> None:
    if docker.host.backend.NAME != "local":
        pytest.skip("`qcstack traces` copies the files with the local docker CLI: run it locally")
    trace_id = read_account_through_the_gateway.trace_id
    roots = [r for r in trees(parse_lines(container_trace_lines(stack_containers[COLLECTOR].id)))
             if r.trace_id == trace_id]  # fmt: skip
    shown = list(render(roots))
    assert shown[0].startswith(f"trace {trace_id}") and "qc-mcp, qcstack-gateway" in shown[0]

    def indent(text: str) -> int:
        """How deep the first line holding `text` sits in the tree."""
        line = next(line for line in shown if text in line)
        return len(line) - len(line.lstrip())

    gateway_call = indent("qcstack-gateway: tools/call read_account")
    server_call = indent("qc-mcp: tools/call read_account")
    api_request = indent("http.url=https://www.quantconnect.com/api/v2/account/read")
    assert gateway_call < server_call < api_request


# OBS-02 -------------------------------------------------------------------------------------


def collector_config(docker: DockerHost, collector: Container) -> dict[str, Any]:
    """The configuration the running collector was started with, read through its own root."""
    command = collector.attrs["Config"]["Cmd"]
    assert command == ["--config=/etc/otelcol/collector.yaml"], command
    pid = str(docker.main_pid(collector.id))
    text = docker.check("cat /proc/%s/root/etc/otelcol/collector.yaml", pid)
    config: dict[str, Any] = yaml.safe_load(text)
    return config


@pytest.mark.control("OBS-02", "config")
def test_collector_redacts_in_every_pipeline_before_anything_is_written(
    docker: DockerHost, stack_containers: StackContainers
) -> None:
    config = collector_config(docker, stack_containers[COLLECTOR])
    pipelines = config["service"]["pipelines"]
    assert pipelines
    for pipeline in pipelines.values():
        assert pipeline["processors"][:2] == ["memory_limiter", "redaction"]
    redaction = config["processors"]["redaction"]
    assert redaction["allow_all_keys"] is True and redaction["blocked_values"]


@pytest.mark.control("OBS-02", "config")
def test_server_captures_no_http_headers_into_spans(qc_mcp: Container) -> None:
    environment = [v.split("=", 1)[0] for v in qc_mcp.attrs["Config"]["Env"]]
    assert not [v for v in environment if v.startswith("OTEL_INSTRUMENTATION_HTTP_CAPTURE")]


def canary_span() -> tuple[str, dict[str, Any]]:
    """A span whose attributes carry the canary API token, the canary brokerage password and a
    Basic authorization header: what a careless sender (or a bug) would put into a span."""

    def attr(key: str, value: str) -> dict[str, Any]:
        return {"key": key, "value": {"stringValue": value}}

    span_id = secrets.token_hex(8)
    arguments = json.dumps({"brokerage": {"ib-password": CANARY_BROKERAGE_PASSWORD}})
    span = {
        "traceId": secrets.token_hex(16),
        "spanId": span_id,
        "name": "tools/call create_live_algorithm",
        "kind": SPAN_KIND_CLIENT,
        "startTimeUnixNano": str(time.time_ns()),
        "endTimeUnixNano": str(time.time_ns() + 1000),
        "attributes": [
            attr("gen_ai.tool.name", "create_live_algorithm"),
            attr("quantconnect.api_token", CANARY_API_TOKEN),
            attr("gen_ai.tool.call.arguments", arguments),
            attr("http.request.header.authorization", "Basic OTAwNDE3OmNhbmFyeQ=="),
            attr("error.message", f"login failed: password={CANARY_BROKERAGE_PASSWORD}"),
        ],
    }
    resource = {"attributes": [attr("service.name", "qcstack-test-sender")]}
    body = {"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": [span]}]}]}
    return span_id, body


@pytest.fixture(scope="module")
def planted_canary_span(
    docker: DockerHost, project: str, qc_mcp: Container, read_account_traced: TracedCall
) -> tuple[str, str, list[Span]]:
    """The canary span sent to the stack's collector from a container on its network; returns
    its span id and the file output once it holds it."""
    span_id, body = canary_span()
    send = textwrap.dedent(
        """
        import sys, urllib.request
        request = urllib.request.Request(
            "http://otel-collector:4318/v1/traces", data=sys.argv[1].encode(),
            headers={"Content-Type": "application/json"},
        )
        print(urllib.request.urlopen(request, timeout=10).status)
        """
    )
    sent = docker.check(
        f"docker run --rm --network %s --user {COLLECTOR_UID} --read-only --cap-drop ALL "
        "--security-opt no-new-privileges --entrypoint /usr/bin/python3 %s -c %s %s",
        stack_network(project, "telemetry"),
        qc_mcp.attrs["Image"],
        send,
        json.dumps(body),
    )
    assert sent.strip() == "200"
    text, spans = wait_for_spans(
        docker, project, qc_mcp.attrs["Image"], lambda spans: span_id in {s.span_id for s in spans}
    )
    return span_id, text, spans


@pytest.mark.control("OBS-02", "behaviour")
@pytest.mark.parametrize(
    "secret", [CANARY_API_TOKEN, CANARY_BROKERAGE_PASSWORD, "OTAwNDE3OmNhbmFyeQ"]
)
def test_planted_secret_appears_nowhere_in_the_exported_traces(
    planted_canary_span: tuple[str, str, list[Span]], secret: str
) -> None:
    span_id, text, spans = planted_canary_span
    (planted,) = [s for s in spans if s.span_id == span_id]
    assert planted.attributes["gen_ai.tool.name"] == "create_live_algorithm"  # kept
    assert planted.attributes["quantconnect.api_token"] == MASKED
    assert secret not in text


@pytest.mark.control("OBS-02", "behaviour")
def test_signed_api_requests_leave_no_credential_in_the_traces(
    docker: DockerHost,
    api_double: Container,
    read_account_traced: TracedCall,
    planted_canary_span: tuple[str, str, list[Span]],
) -> None:
    # Every Authorization header the API double received (Basic, the token's hash) and the
    # token itself: none in the file, which holds the signed requests' spans.
    _, text, _ = planted_canary_span
    headers = {r["headers"].get("authorization") for r in double_records(docker, api_double)}
    signatures = {h.split()[-1] for h in headers if h}
    assert signatures, "the API double recorded no signed request"
    assert any(s.kind == SPAN_KIND_CLIENT for s in read_account_traced.spans)
    assert [s for s in signatures if s in text] == []
    server_spans = [s for s in flatten(text) if s.service == "qc-mcp"]
    assert server_spans
    for span in server_spans:
        assert not [k for k in span.attributes if ".header." in k], span.name


# OBS-03 -------------------------------------------------------------------------------------


@pytest.mark.control("OBS-03", "config")
@pytest.mark.parametrize("service", ["qc-mcp", "gateway", "gateway-relay", "egress-proxy"])
def test_no_service_waits_for_the_collector(
    stack_containers: StackContainers, service: str
) -> None:
    labels = stack_containers[service].attrs["Config"]["Labels"]
    assert COLLECTOR not in labels.get("com.docker.compose.depends_on", "")


@pytest.mark.control("OBS-03", "config")
def test_server_exports_in_the_background_with_bounded_waits(qc_mcp: Container) -> None:
    environment = dict(v.split("=", 1) for v in qc_mcp.attrs["Config"]["Env"])
    assert int(environment["OTEL_EXPORTER_OTLP_TRACES_TIMEOUT"]) <= 2000
    assert int(environment["OTEL_BSP_EXPORT_TIMEOUT"]) <= 2000
    assert int(environment["OTEL_BSP_MAX_QUEUE_SIZE"]) <= 2048


@pytest.fixture
def collector_out(
    request: pytest.FixtureRequest, docker: DockerHost, stack_containers: StackContainers
) -> Iterator[str]:
    """The stack's collector stopped or frozen (docker pause) for one test, then back and
    healthy: the state stays the same container's."""
    how: str = request.param
    container = stack_containers[COLLECTOR].id
    docker.check(f"docker {how} %s", container)
    try:
        yield how
    finally:
        docker.check(f"docker {'unpause' if how == 'pause' else 'start'} %s", container)
        deadline = time.monotonic() + 60
        while docker.inspect("container", container)["State"]["Health"]["Status"] != "healthy":
            assert time.monotonic() < deadline, "the collector did not come back healthy"
            time.sleep(1)


@pytest.mark.control("OBS-03", "behaviour")
@pytest.mark.parametrize("collector_out", ["stop", "pause"], indirect=True)
def test_tool_calls_work_with_the_collector_gone(
    docker: DockerHost,
    settings: Settings,
    project: str,
    qc_mcp: Container,
    stack_containers: StackContainers,
    collector_out: str,
) -> None:
    state = docker.inspect("container", stack_containers[COLLECTOR].id)["State"]
    assert (state["Running"] is False) if collector_out == "stop" else state["Paused"]
    image = qc_mcp.attrs["Image"]
    started = time.monotonic()
    direct = mcp_session(docker, project, image, CALLS)
    through_gateway = gateway_session(docker, settings, image, CALLS)
    took = time.monotonic() - started
    for session in (direct, through_gateway):
        for name, _ in CALLS:
            assert session.calls[name]["error"] is False, session.calls[name]["text"]
    # Two sessions of two calls each: a second or two normally; an export in the caller's way
    # would wait out its timeouts and retries on every call.
    assert took < 30, f"the calls took {took:.1f}s with the collector {collector_out}ed"


# OBS-04 -------------------------------------------------------------------------------------


@pytest.mark.control("OBS-04", "config")
def test_collector_is_on_the_telemetry_network_alone(
    stack_containers: StackContainers, project: str
) -> None:
    networks = stack_containers[COLLECTOR].attrs["NetworkSettings"]["Networks"]
    assert sorted(networks) == [stack_network(project, "telemetry")]


@pytest.mark.control("OBS-04", "config")
def test_telemetry_network_is_internal_and_shared_only_with_the_senders(
    docker: DockerHost, project: str
) -> None:
    network = docker.inspect("network", stack_network(project, "telemetry"))
    assert network["Internal"] is True
    assert network["EnableIPv6"] is False
    assert network["Options"].get("com.docker.network.bridge.inhibit_ipv4") == "true"
    members = {
        docker.inspect("container", container_id)["Config"]["Labels"].get(
            "com.docker.compose.service", container_id
        )
        for container_id in network["Containers"]
    }
    assert members == {"gateway", "qc-mcp", "falco-responder", COLLECTOR}
