"""The FastMCP policy middleware: tool listings filtered by profile, tool calls through CallGate."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import mcp_types as mt
from fastmcp.exceptions import ToolError
from fastmcp.server.middleware import CallNext, Middleware, MiddlewareContext
from fastmcp.tools.base import Tool, ToolResult
from mcp_types import TextContent

from gateway.calls import PREFIX, CallGate, Gate, Refused
from gateway.policy import listed


class PolicyMiddleware(Middleware):
    def __init__(self, gate: Gate) -> None:
        self.gate = gate
        self.calls = CallGate(gate)

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
        try:
            admitted = await self.calls.admit(
                tool, dict(context.message.arguments or {}), _ids(context)
            )
            if admitted.arguments != context.message.arguments:
                context = context.copy(
                    message=context.message.model_copy(update={"arguments": admitted.arguments})
                )
            try:
                result = self._scrubbed(await call_next(context))
            except ToolError as error:
                message = self.gate.brokerages.scrub(str(error))
                self.calls.failed(admitted, message)
                raise ToolError(message) from None
            except Exception as error:
                self.calls.failed(admitted, type(error).__name__)
                raise ToolError(PREFIX + f"{tool} failed before an answer came back") from None
            self.calls.completed(admitted, is_error=_is_error(result))
        except Refused as refused:
            raise ToolError(str(refused)) from None
        return result

    def _scrubbed(self, result: ToolResult) -> ToolResult:
        """The upstream's answer without any stored brokerage secret (errors may echo input)."""
        scrub_json = self.gate.brokerages.scrub_json
        content = [content.model_dump(by_alias=True) for content in result.content]
        if scrub_json(content) == content and (
            scrub_json(result.structured_content) == result.structured_content
        ):
            return result
        return ToolResult(
            content=[TextContent(type="text", text=self.gate.brokerages.scrub(text_of(result)))],
            structured_content=scrub_json(result.structured_content),
            is_error=_is_error(result),
        )


def text_of(result: ToolResult) -> str:
    """A tool result's text contents, joined."""
    return " ".join(getattr(content, "text", "") for content in result.content)


def _ids(context: MiddlewareContext[Any]) -> dict[str, Any]:
    fastmcp_context = context.fastmcp_context
    if fastmcp_context is None:
        return {}
    return {
        "session": fastmcp_context.session_id,
        "request": fastmcp_context.request_id,
    }


def _is_error(result: ToolResult) -> bool:
    return bool(getattr(result, "is_error", False) or getattr(result, "isError", False))
