"""One tool call through the gateway's rules: decided, audited first, held for a person if need be.

Both ways a tool call reaches qc-mcp use this: the fast lane (gateway/fastlane.py) and the
FastMCP policy middleware (gateway/middleware.py). Neither decides anything itself.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace

from gateway.approvals import ApprovalError, ApprovalState, ApprovalStore
from gateway.audit import AuditError, AuditLog
from gateway.brokerages import BrokerageError, BrokerageStore
from gateway.limits import Limiter
from gateway.lockdown import Lockdown
from gateway.policy import Decision, Profile, Verdict, decide
from gateway.redact import redact
from gateway.tools import kind_of
from gateway.tracing import TRACER_NAME, current_trace_id

tracer = trace.get_tracer(TRACER_NAME)

PREFIX = "qcstack gateway: "
APPROVAL_POLL_SECONDS = 0.25


class Refused(Exception):
    """The call does not go on; the message (prefixed, free of secrets) is the client's answer."""


@dataclass(frozen=True)
class Gate:
    """What every call is decided with; built once from the gateway's settings."""

    profile: Profile
    audit: AuditLog
    approvals: ApprovalStore
    lockdown: Lockdown
    held_tools: frozenset[str] = frozenset()
    approval_wait_seconds: float = 900.0
    limiter: Limiter = field(default_factory=Limiter)
    brokerages: BrokerageStore = field(default_factory=BrokerageStore)


@dataclass(frozen=True)
class Admitted:
    """A call that may go upstream: what to send, and its audit fields for what follows."""

    arguments: dict[str, Any]
    """The arguments to send: the model's, with named brokerage configurations filled in."""
    record: Mapping[str, Any]


class CallGate:
    def __init__(self, gate: Gate) -> None:
        self.gate = gate

    async def admit(
        self, tool: str, arguments: Mapping[str, Any], ids: Mapping[str, Any]
    ) -> Admitted:
        """Decides the call, waits for a person if it is held; raises Refused if it may not
        run. Every step is in the audit log before the next one."""
        arguments = dict(arguments)
        # Secrets by key, and any stored brokerage secret wherever it turns up.
        shown = self.gate.brokerages.scrub_json(redact(arguments))
        record = {"tool": tool, "arguments": shown, **ids}
        trace_id = current_trace_id()
        if trace_id is not None:
            record["trace"] = trace_id  # the audit entry and the trace find each other
        with tracer.start_as_current_span("qcstack.policy") as span:
            decision = decide(
                tool,
                arguments,
                self.gate.profile,
                held_tools=self.gate.held_tools,
                lockdown=self.gate.lockdown.state().locked,
            )
            refusal = self.gate.brokerages.refusal(tool, arguments)
            if decision.verdict is not Verdict.DENY and refusal is not None:
                decision = Decision(Verdict.DENY, refusal)
            span.set_attribute("qcstack.policy.verdict", str(decision.verdict))
            span.set_attribute("qcstack.policy.profile", str(self.gate.profile))
        self.audit({**record, "event": str(decision.verdict), "reason": decision.reason})
        if decision.verdict is Verdict.DENY:
            raise Refused(PREFIX + decision.reason)
        kind = kind_of(tool)
        limited = None if kind is None else self.gate.limiter.admit(tool, kind)
        if limited is not None:
            self.audit({**record, "event": "rate-limited", "reason": limited})
            raise Refused(PREFIX + limited)
        if decision.verdict is Verdict.HOLD:
            with tracer.start_as_current_span("qcstack.approval") as span:
                span.set_attribute("qcstack.approval.outcome", "pending")
                await self._wait_for_approval(tool, arguments, record, span)
        try:
            filled = self.gate.brokerages.fill(tool, arguments)
        except BrokerageError as error:  # the store changed under a held call
            self.audit({**record, "event": "failed", "error": str(error)})
            raise Refused(PREFIX + str(error)) from None
        return Admitted(filled, record)

    def completed(self, admitted: Admitted, *, is_error: bool) -> None:
        self.audit({**admitted.record, "event": "completed", "is_error": is_error})

    def failed(self, admitted: Admitted, error: str) -> None:
        self.audit({**admitted.record, "event": "failed", "error": error[:500]})

    async def _wait_for_approval(
        self,
        tool: str,
        arguments: Mapping[str, Any],
        record: Mapping[str, Any],
        span: trace.Span,
    ) -> None:
        try:
            held = await asyncio.to_thread(self.gate.approvals.hold, tool, arguments)
        except (ApprovalError, OSError) as error:
            self.audit({**record, "event": "failed", "error": "approval store unavailable"})
            raise Refused(PREFIX + f"cannot hold {tool} for approval ({error}); refused") from None
        span.set_attribute("qcstack.approval.id", held.id)
        self.audit({**record, "event": "waiting", "approval": held.id})
        deadline = asyncio.get_running_loop().time() + self.gate.approval_wait_seconds
        approval = held
        while approval.state is ApprovalState.PENDING:
            if asyncio.get_running_loop().time() >= deadline:
                break
            await asyncio.sleep(APPROVAL_POLL_SECONDS)
            approval = await asyncio.to_thread(self.gate.approvals.get, held.id)
        if approval.state in (ApprovalState.PENDING, ApprovalState.EXPIRED):
            # The approval's lifetime is the wait: whichever ends first, nobody decided in time.
            waited = f"no decision within {self.gate.approval_wait_seconds:.0f}s"
            with contextlib.suppress(ApprovalError):  # already expired: nothing left to close
                await asyncio.to_thread(self.gate.approvals.deny, held.id, f"gateway ({waited})")
            span.set_attribute("qcstack.approval.outcome", "timeout")
            self.audit({**record, "event": "approval-timeout", "approval": held.id})
            raise Refused(PREFIX + f"not run: approval {held.id} got {waited}")
        if approval.state is ApprovalState.APPROVED and self.gate.lockdown.state().locked:
            # The kill switch wins over an approval given before it was pulled.
            span.set_attribute("qcstack.approval.outcome", "lockdown")
            self.audit({**record, "event": "lockdown", "approval": held.id})
            raise Refused(PREFIX + f"not run: lockdown was engaged while {held.id} was held")
        try:
            used = await asyncio.to_thread(self.gate.approvals.consume, held.id, tool, arguments)
        except ApprovalError as error:
            span.set_attribute("qcstack.approval.outcome", str(approval.state))
            self.audit({**record, "event": f"approval-{approval.state}", "approval": held.id})
            raise Refused(PREFIX + f"not run: {error}") from None
        span.set_attribute("qcstack.approval.outcome", "approved")
        self.audit(
            {**record, "event": "approved", "approval": used.id, "approved_by": used.decided_by}
        )

    def audit(self, entry: Mapping[str, Any]) -> None:
        """On disk before the call goes on; a log that cannot be written stops the call.

        Written from the event loop itself, not a worker thread: an entry takes some 0.3 ms,
        most of it fsync, and handing it to a thread and back added 0.1-0.2 ms to every call
        (benchmarks/README.md). A disk that stops answering stops the gateway, visibly (its
        health check fails), where with a thread it stopped every call anyway, behind the
        log's lock, while /healthz still said ok."""
        try:
            self.gate.audit.append(entry)
        except AuditError as error:
            raise Refused(PREFIX + f"audit log unavailable, call refused ({error})") from None
