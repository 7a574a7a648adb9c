"""Reads the collector's trace files (OTLP JSON lines) and shows each trace as a tree of spans."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from stack.process import CommandError, output_bytes

if TYPE_CHECKING:
    from stack.compose import ComposeProject

SHOWN_ATTRIBUTES = (
    "mcp.method.name",
    "gen_ai.tool.name",
    "jsonrpc.request.id",
    "mcp.session.id",
    "error.type",
    "qcstack.policy.verdict",
    "qcstack.approval.id",
    "qcstack.approval.outcome",
    "http.request.method",
    "http.method",
    "url.full",
    "http.url",
    "http.route",
    "http.target",
    "url.path",
    "http.response.status_code",
    "http.status_code",
)
"""What an operator reads in a span's line: what was called, by whom, with what outcome."""
STATUS = {0: "unset", 1: "ok", 2: "ERROR"}
COLLECTOR_SERVICE = "otel-collector"
TRACE_DIR = "/var/lib/otelcol"
"""Where otel/collector.yaml's file exporter writes (traces.jsonl and its rotated backups)."""


class TraceFileError(ValueError):
    """A trace file line that is not OTLP JSON."""


@dataclass
class Span:
    trace_id: str
    span_id: str
    parent_id: str
    service: str
    name: str
    start_ns: int
    end_ns: int
    status: str
    attributes: dict[str, Any]
    kind: int = 0
    """OTLP's SpanKind: 1 internal, 2 server, 3 client."""
    children: list[Span] = field(default_factory=list)

    @property
    def milliseconds(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6


def _value(value: Mapping[str, Any]) -> Any:
    """An OTLP AnyValue as plain Python."""
    for key in ("stringValue", "boolValue", "doubleValue"):
        if key in value:
            return value[key]
    if "intValue" in value:
        return int(value["intValue"])
    if "arrayValue" in value:
        return [_value(v) for v in value["arrayValue"].get("values", [])]
    return None


def _attributes(items: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    return {item["key"]: _value(item.get("value", {})) for item in items}


def parse_lines(lines: Iterable[str]) -> list[Span]:
    """Every span in the file exporter's lines (one export request of OTLP JSON per line)."""
    spans: list[Span] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            document = json.loads(line)
            for resource in document.get("resourceSpans", []):
                described = _attributes(resource.get("resource", {}).get("attributes", []))
                service = str(described.get("service.name", "?"))
                for scope in resource.get("scopeSpans", []):
                    spans.extend(_span(raw, service) for raw in scope.get("spans", []))
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise TraceFileError(f"line {number} is not OTLP JSON ({error})") from None
    return spans


def _span(raw: Mapping[str, Any], service: str) -> Span:
    return Span(
        trace_id=raw["traceId"],
        span_id=raw["spanId"],
        parent_id=raw.get("parentSpanId", ""),
        service=service,
        name=raw["name"],
        start_ns=int(raw["startTimeUnixNano"]),
        end_ns=int(raw["endTimeUnixNano"]),
        status=STATUS.get(int(raw.get("status", {}).get("code", 0)), "unset"),
        attributes=_attributes(raw.get("attributes", [])),
        kind=int(raw.get("kind", 0)),
    )


def trees(spans: Sequence[Span]) -> list[Span]:
    """Each trace's root spans (spans whose parent is not in the files), children attached,
    oldest first."""
    by_id = {(span.trace_id, span.span_id): span for span in spans}
    roots: list[Span] = []
    for span in spans:
        span.children = []
    for span in sorted(spans, key=lambda s: s.start_ns):
        parent = by_id.get((span.trace_id, span.parent_id))
        (parent.children if parent is not None else roots).append(span)
    return roots


def render(roots: Sequence[Span]) -> Iterator[str]:
    """Lines to print: a heading per trace, then its spans indented under their parents."""
    traces: dict[str, list[Span]] = {}
    for root in roots:
        traces.setdefault(root.trace_id, []).append(root)
    for trace_id, tops in traces.items():
        started = datetime.fromtimestamp(tops[0].start_ns / 1e9, tz=UTC)
        services = sorted({span.service for top in tops for span in _walk(top)})
        yield f"trace {trace_id}  {started:%Y-%m-%d %H:%M:%S} UTC  ({', '.join(services)})"
        for top in tops:
            yield from _lines(top, 1)
        yield ""


def _walk(span: Span) -> Iterator[Span]:
    yield span
    for child in span.children:
        yield from _walk(child)


def _lines(span: Span, depth: int) -> Iterator[str]:
    shown = " ".join(
        f"{key}={span.attributes[key]}" for key in SHOWN_ATTRIBUTES if key in span.attributes
    )
    line = f"{'  ' * depth}{span.service}: {span.name}  {span.milliseconds:.1f} ms  {span.status}"
    yield f"{line}  {shown}".rstrip()
    for child in span.children:
        yield from _lines(child, depth + 1)


def lines_from_tar(archive: bytes) -> list[str]:
    """The lines of every trace file (the current one and its rotated backups, oldest first)
    in a tar stream, as `docker cp CONTAINER:DIR -` writes it."""
    found: list[tuple[str, bytes]] = []
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        for member in tar.getmembers():
            name = member.name.rsplit("/", 1)[-1]
            if member.isfile() and name.startswith("traces") and name.endswith(".jsonl"):
                extracted = tar.extractfile(member)
                if extracted is not None:
                    found.append((name, extracted.read()))
    # Backups carry their time in the name; the current file, traces.jsonl, sorts last.
    found.sort(key=lambda item: (item[0] == "traces.jsonl", item[0]))
    return [line for _, data in found for line in data.decode("utf-8").splitlines()]


def latest(roots: Sequence[Span], count: int) -> list[Span]:
    """The roots of the `count` most recent traces."""
    recent: list[str] = []
    for root in sorted(roots, key=lambda s: s.start_ns, reverse=True):
        if root.trace_id not in recent:
            recent.append(root.trace_id)
    wanted = set(recent[:count])
    return [root for root in roots if root.trace_id in wanted]


def read_collector_files(project: ComposeProject) -> list[str]:
    """The lines of the collector's trace files, copied out of its running container."""
    container = project.run("ps", "--quiet", COLLECTOR_SERVICE, capture=True).strip()
    if not container:
        raise CommandError(
            f"no {COLLECTOR_SERVICE} container in project {project.name}: is the stack up?"
        )
    return container_trace_lines(container)


def container_trace_lines(container: str) -> list[str]:
    """The lines of the trace files in the collector container `container` (name or id)."""
    return lines_from_tar(output_bytes(["docker", "cp", f"{container}:{TRACE_DIR}/.", "-"]))
