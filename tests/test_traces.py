"""`qcstack traces` (stack/traces.py): the collector's OTLP JSON files read back as span trees."""

from __future__ import annotations

import io
import json
import tarfile
from typing import Any

import pytest

from stack.traces import TraceFileError, latest, lines_from_tar, parse_lines, render, trees

TRACE = "0af7651916cd43dd8448eb211c80319c"
START = 1_764_087_692_000_000_000


def span(
    span_id: str, parent: str, name: str, start_ms: int, end_ms: int, **attributes: Any
) -> dict[str, Any]:
    return {
        "traceId": TRACE,
        "spanId": span_id,
        "parentSpanId": parent,
        "name": name,
        "kind": 2,
        "startTimeUnixNano": str(START + start_ms * 1_000_000),
        "endTimeUnixNano": str(START + end_ms * 1_000_000),
        "attributes": [{"key": k, "value": {"stringValue": v}} for k, v in attributes.items()],
        "status": {"code": 2 if "error.type" in attributes else 0},
    }


def export_line(service: str, *spans: dict[str, Any]) -> str:
    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]}
    document = {"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": list(spans)}]}]}
    return json.dumps(document)


GATEWAY_LINE = export_line(
    "qcstack-gateway",
    span("a1", "", "tools/call read_account", 0, 80, **{"gen_ai.tool.name": "read_account"}),
    span("a2", "a1", "qcstack.policy", 1, 2, **{"qcstack.policy.verdict": "allow"}),
    span("a3", "a1", "tools/call read_account", 3, 78),
)
QC_MCP_LINE = export_line(
    "qc-mcp",
    span("b1", "a3", "POST /mcp", 4, 77),
    span("b2", "b1", "POST", 10, 70, **{"url.full": "https://www.quantconnect.com/api/v2/x"}),
)


def test_one_call_reads_as_one_tree_across_services() -> None:
    roots = trees(parse_lines([QC_MCP_LINE, "", GATEWAY_LINE]))
    assert [root.span_id for root in roots] == ["a1"]
    lines = list(render(roots))
    assert lines[0].startswith(f"trace {TRACE}") and "qc-mcp, qcstack-gateway" in lines[0]
    assert lines[1] == (
        "  qcstack-gateway: tools/call read_account  80.0 ms  unset  gen_ai.tool.name=read_account"
    )
    assert lines[2].startswith("    qcstack-gateway: qcstack.policy") and lines[2].endswith(
        "qcstack.policy.verdict=allow"
    )
    assert lines[4].startswith("      qc-mcp: POST /mcp")
    assert lines[5] == (
        "        qc-mcp: POST  60.0 ms  unset  url.full=https://www.quantconnect.com/api/v2/x"
    )


def test_a_failed_span_shows_its_error_type() -> None:
    refused = span("c1", "", "tools/call x", 0, 1, **{"error.type": "refused"})
    line = export_line("qcstack-gateway", refused)
    (text,) = [t for t in render(trees(parse_lines([line]))) if "tools/call" in t]
    assert text.endswith("ERROR  error.type=refused")


def test_a_span_whose_parent_was_not_exported_is_shown_as_a_root() -> None:
    roots = trees(parse_lines([QC_MCP_LINE]))
    assert [root.span_id for root in roots] == ["b1"]


NO_SPAN_FIELDS = '{"resourceSpans": [{"scopeSpans": [{"spans": [{}]}]}]}'


@pytest.mark.parametrize("line", ["not json", NO_SPAN_FIELDS])
def test_a_line_that_is_not_otlp_json_is_reported_with_its_number(line: str) -> None:
    with pytest.raises(TraceFileError, match="line 2"):
        parse_lines([GATEWAY_LINE, line])


def test_latest_keeps_the_most_recent_traces() -> None:
    older = GATEWAY_LINE.replace(TRACE, "1" * 32).replace(str(START), str(START - 10**12))
    roots = trees(parse_lines([older, GATEWAY_LINE]))
    assert {root.trace_id for root in latest(roots, 1)} == {TRACE}
    assert len(latest(roots, 5)) == 2


def test_rotated_files_are_read_oldest_first_and_the_current_file_last() -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, text in [
            ("otelcol/traces.jsonl", "current"),
            ("otelcol/traces-2026-11-25T10-00-00.000.jsonl", "older"),
            ("otelcol/traces-2026-11-24T10-00-00.000.jsonl", "oldest"),
            ("otelcol/other.log", "ignored"),
        ]:
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    assert lines_from_tar(buffer.getvalue()) == ["oldest", "older", "current"]
