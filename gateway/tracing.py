"""The gateway's traces: servicebase/tracing.py's queue and helpers, under the gateway's name."""

from __future__ import annotations

from servicebase import tracing
from servicebase.tracing import (
    SpanQueue,
    context_from_meta,
    current_carrier,
    current_trace_id,
    set_error,
)

__all__ = [
    "SERVICE_NAME",
    "TRACER_NAME",
    "SpanQueue",
    "Tracing",
    "context_from_meta",
    "current_carrier",
    "current_trace_id",
    "set_error",
]

SERVICE_NAME = "qcstack-gateway"
TRACER_NAME = "qcstack.gateway"


class Tracing(tracing.Tracing):
    """The gateway's tracer and its queue (None when no collector endpoint is set)."""

    service_name = SERVICE_NAME
    tracer_name = TRACER_NAME
