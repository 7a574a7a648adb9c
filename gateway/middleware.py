"""The policy middleware: each tool call decided, audited first, held for a person if need be."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import mcp_types as mt
from fastmcp.exceptions import ToolError
from fastmcp.server.middleware import CallNext, Middleware, MiddlewareContext
from fastmcp.tools.base import Tool, ToolResult
from mcp_types import TextContent

from gateway.approvals import ApprovalError, ApprovalState, ApprovalStore
from gateway.audit import AuditError, AuditLog
from gateway.brokerages import BrokerageStore
from gateway.limits import Limiter
from gateway.lockdown import Lockdown
from gateway.policy import Decision, Profile, Verdict, decide, listed
from gateway.redact import redact
from gateway.tools import kind_of

PREFIX = "qcstack gateway: "
APPROVAL_POLL_SECONDS = 0.25


@dataclass(frozen=True)
class Gate:
    """What the middleware decides with; built once from the gateway's settings."""

    profile: Profile
    audit: AuditLog
    approvals: ApprovalStore
    lockdown: Lockdown
    held_tools: frozenset[str] = frozenset()
    approval_wait_seconds: float = 900.0
    limiter: Limiter = field(default_factory=Limiter)
    brokerages: BrokerageStore = field(default_factory=BrokerageStore)


class PolicyMiddleware(Middleware):
    def __init__(self, gate: Gate) -> None:
        self.gate = gate

    async def on_list_tools(
        self,
        context: MiddlewareContext[mt.ListToolsRequest],
        call_next: CallNext[mt.ListToolsRequest, Sequence[Tool]],
    ) -> Sequence[Tool]:
        tools = await call_next(context)
        return [tool for tool in tools if listed(tool.name, self.gate.profile)]

    async def on_call_tool(
        self,
        context: MiddlewareContext[mt.CallToolRequestParams],
        call_next: CallNext[mt.CallToolRequestParams, ToolResult],
    ) -> ToolResult:
        tool = context.message.name
        arguments: dict[str, Any] = dict(context.message.arguments or {})
        call = {"tool": tool, "arguments": redact(arguments), **_ids(context)}
        lockdown = self.gate.lockdown.state()
        decision = decide(
            tool,
            arguments,
            self.gate.profile,
            held_tools=self.gate.held_tools,
            lockdown=lockdown.locked,
        )
        refusal = self.gate.brokerages.refusal(tool, arguments)
        if decision.verdict is not Verdict.DENY and refusal is not None:
            decision = Decision(Verdict.DENY, refusal)
        await self._audit({**call, "event": str(decision.verdict), "reason": decision.reason})
        if decision.verdict is Verdict.DENY:
            raise ToolError(PREFIX + decision.reason)
        kind = kind_of(tool)
        limited = None if kind is None else self.gate.limiter.admit(tool, kind)
        if limited is not None:
            await self._audit({**call, "event": "rate-limited", "reason": limited})
            raise ToolError(PREFIX + limited)
        if decision.verdict is Verdict.HOLD:
            await self._wait_for_approval(tool, arguments, call)
        filled = self.gate.brokerages.fill(tool, arguments)
        if filled != arguments:
            context = context.copy(message=context.message.model_copy(update={"arguments": filled}))
        try:
            result = self._scrubbed(await call_next(context))
        except ToolError as error:
            message = self.gate.brokerages.scrub(str(error))
            await self._audit({**call, "event": "failed", "error": message[:500]})
            raise ToolError(message) from None
        except Exception as error:
            await self._audit({**call, "event": "failed", "error": type(error).__name__})
            raise ToolError(PREFIX + f"{tool} failed before an answer came back") from None
        await self._audit({**call, "event": "completed", "is_error": _is_error(result)})
        return result

    def _scrubbed(self, result: ToolResult) -> ToolResult:
        """The upstream's answer without any stored brokerage secret (errors may echo input)."""
        structured = json.dumps(result.structured_content, default=str)
        text = _text(result)
        scrub = self.gate.brokerages.scrub
        if scrub(text) == text and scrub(structured) == structured:
            return result
        return ToolResult(
            content=[TextContent(type="text", text=scrub(text))],
            structured_content=None
            if result.structured_content is None
            else json.loads(scrub(structured)),
            is_error=_is_error(result),
        )

    async def _wait_for_approval(
        self, tool: str, arguments: Mapping[str, Any], call: Mapping[str, Any]
    ) -> None:
        try:
            held = await asyncio.to_thread(self.gate.approvals.hold, tool, arguments)
        except (ApprovalError, OSError) as error:
            await self._audit({**call, "event": "failed", "error": "approval store unavailable"})
            raise ToolError(
                PREFIX + f"cannot hold {tool} for approval ({error}); refused"
            ) from None
        await self._audit({**call, "event": "waiting", "approval": held.id})
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
            await self._audit({**call, "event": "approval-timeout", "approval": held.id})
            raise ToolError(PREFIX + f"not run: approval {held.id} got {waited}")
        if approval.state is ApprovalState.APPROVED and self.gate.lockdown.state().locked:
            # The kill switch wins over an approval given before it was pulled.
            await self._audit({**call, "event": "lockdown", "approval": held.id})
            raise ToolError(PREFIX + f"not run: lockdown was engaged while {held.id} was held")
        try:
            used = await asyncio.to_thread(self.gate.approvals.consume, held.id, tool, arguments)
        except ApprovalError as error:
            await self._audit({**call, "event": f"approval-{approval.state}", "approval": held.id})
            raise ToolError(PREFIX + f"not run: {error}") from None
        await self._audit(
            {**call, "event": "approved", "approval": used.id, "approved_by": used.decided_by}
        )

    async def _audit(self, entry: Mapping[str, Any]) -> None:
        """On disk before the call goes on; a log that cannot be written stops the call."""
        try:
            await asyncio.to_thread(self.gate.audit.append, entry)
        except AuditError as error:
            raise ToolError(PREFIX + f"audit log unavailable, call refused ({error})") from None


def _ids(context: MiddlewareContext[Any]) -> dict[str, Any]:
    fastmcp_context = context.fastmcp_context
    if fastmcp_context is None:
        return {}
    return {
        "session": fastmcp_context.session_id,
        "request": fastmcp_context.request_id,
    }


def _text(result: ToolResult) -> str:
    return " ".join(getattr(content, "text", "") for content in result.content)


def _is_error(result: ToolResult) -> bool:
    return bool(getattr(result, "is_error", False) or getattr(result, "isError", False))
