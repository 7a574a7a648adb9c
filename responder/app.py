"""The responder's HTTP app: POST /alerts takes Falco's alerts, GET /healthz reports."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from responder.alert import FalcoAlert
from responder.intake import Rejection, read_alert
from responder.lockdown import LockdownCaller
from responder.repeats import Repeats
from responder.settings import ResponderSettings
from servicebase.audit import AuditError, AuditLog
from servicebase.tracing import Tracing, current_trace_id, set_error

logger = logging.getLogger("qcstack.responder")

OUTPUT_CHARS = 2048
"""How much of an alert's output text the audit log keeps."""
FIELDS_CHARS = 4096
"""The longest output_fields value (as text) the audit log keeps; longer ones are cut."""


def lockdown_worthy(settings: ResponderSettings, alert: FalcoAlert) -> bool:
    """One of qcstack's own alerts at or above the lockdown priority."""
    return settings.lockdown_tag in alert.tags and alert.priority >= settings.lockdown_priority


@dataclass(frozen=True)
class Responder:
    settings: ResponderSettings
    audit: AuditLog
    caller: LockdownCaller
    repeats: Repeats
    tracing: Tracing

    def action_for(self, alert: FalcoAlert) -> str:
        """What the alert gets: "lockdown", "recorded", or "suppressed" for a repeat."""
        if self.repeats.is_repeat(alert.rule, alert.container):
            return "suppressed"
        return "lockdown" if lockdown_worthy(self.settings, alert) else "recorded"


def alert_record(
    alert: FalcoAlert, action: str, trace: str | None, lockdown_check: bool = False
) -> dict[str, Any]:
    """The audit entry of an alert: what identifies it and what was done, its text bounded.
    lockdown_check: a suppressed repeat of a lockdown alert, for which the gateway's state is
    checked (and lockdown engaged again when it is not locked: see the lockdown-check entry)."""
    fields = {
        name: text if len(text := str(value)) <= FIELDS_CHARS else text[:FIELDS_CHARS] + "..."
        for name, value in list(alert.output_fields.items())[:64]
    }
    return {
        "event": "falco-alert",
        "rule": alert.rule,
        "priority": alert.priority.label,
        "tags": list(alert.tags),
        "action": action,
        "lockdown_check": lockdown_check,
        "container": alert.container,
        "source": alert.source,
        "hostname": alert.hostname,
        "uuid": alert.uuid,
        "alert_time": alert.time,
        "output": alert.output[:OUTPUT_CHARS],
        "output_fields": fields,
        "trace": trace,
    }


async def append(responder: Responder, event: Mapping[str, Any]) -> dict[str, Any] | None:
    """Writes one audit entry (on disk, fsynced, before the answer); None when it cannot."""
    try:
        return await asyncio.to_thread(responder.audit.append, event)
    except AuditError:
        logger.exception("cannot write the audit log")
        return None


async def alerts(request: Request) -> Response:
    responder: Responder = request.app.state.responder
    with responder.tracing.tracer.start_as_current_span("falco alert") as span:
        trace = current_trace_id()
        received = await read_alert(request, responder.settings.max_body_bytes)
        if isinstance(received, Rejection):
            set_error(span, f"http.{received.status}")
            span.set_attribute("http.response.status_code", received.status)
            entry = await append(responder, {**received.record(), "trace": trace})
            logger.warning("alert refused (%d): %s", received.status, received.reason)
            status = received.status if entry is not None else 503
            return JSONResponse({"error": received.reason, "recorded": entry is not None}, status)
        action = responder.action_for(received)
        # A repeat is not let off: an admin may have lifted the first one's lockdown while the
        # attack goes on, so the gateway's state is checked (a GET; engage only if not locked).
        check = action == "suppressed" and lockdown_worthy(responder.settings, received)
        span.set_attribute("falco.rule", received.rule)
        span.set_attribute("falco.priority", received.priority.label)
        span.set_attribute("qcstack.action", action)
        span.set_attribute("qcstack.lockdown_check", check)
        entry = await append(responder, alert_record(received, action, trace, check))
        # Even when the record failed: engaging lockdown is the safer state.
        reason = f"Falco: {received.rule} ({received.priority.label})"
        if action == "lockdown":
            responder.caller.engage(reason, trace)
        elif check:
            responder.caller.ensure(f"{reason}, repeated", trace)
        logger.info("alert %r (%s): %s", received.rule, received.priority.label, action)
        if entry is None:
            set_error(span, "audit")
            return JSONResponse({"error": "the audit log cannot be written", "action": action}, 503)
        return JSONResponse({"action": action, "lockdown_check": check, "seq": entry["seq"]})


async def healthz(request: Request) -> Response:
    responder: Responder = request.app.state.responder
    lockdown = responder.caller.status()
    body = {
        "status": "failing" if lockdown.failing else "ok",
        "lockdown": {
            "pending": lockdown.pending,
            "failures": lockdown.failures,
            "gave_up": lockdown.gave_up,
            "last_error": lockdown.last_error,
            "engaged": lockdown.engaged,
        },
        "spans_dropped": responder.tracing.dropped,
    }
    return JSONResponse(body, 503 if lockdown.failing else 200)


def build_app(responder: Responder) -> Starlette:
    app = Starlette(
        routes=[
            Route("/alerts", alerts, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )
    app.state.responder = responder
    return app
