"""Probe run in a client container of the tests: calls the tool argv[3] (arguments argv[4], JSON)
of the MCP server at argv[1] with the W3C traceparent argv[2] in the request's `_meta`, as the
gateway passes its trace on; prints one JSON line with the result."""

import asyncio
import json
import sys

from mcp import ClientSession
from mcp.client.streamable_http import streamablehttp_client


async def call(url: str, traceparent: str, tool: str, arguments: dict[str, object]) -> dict:
    async with (
        streamablehttp_client(url) as (read, write, _),
        ClientSession(read, write) as client,
    ):
        await client.initialize()
        result = await asyncio.wait_for(
            client.call_tool(tool, arguments, meta={"traceparent": traceparent}), 60
        )
        text = " ".join(getattr(content, "text", "") for content in result.content)
        return {"tool": tool, "error": result.isError, "text": text}


print(json.dumps(asyncio.run(call(sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])))))
