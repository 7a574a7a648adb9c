"""The responder's traces: servicebase/tracing.py under the responder's name."""

from __future__ import annotations

from servicebase import tracing


class ResponderTracing(tracing.Tracing):
    service_name = "qcstack-falco-responder"
    tracer_name = "qcstack.responder"
