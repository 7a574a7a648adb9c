"""Probe run in a client container on the stack's `mcp` network: lists qc-mcp's tools and calls
the ones named in argv[2] (a JSON list of [name, arguments]); prints one JSON line."""

import asyncio
import json
import sys

from mcp import ClientSession
from mcp.client.streamable_http import streamablehttp_client


async def session(url: str, calls: list[list[object]]) -> dict[str, object]:
    async with (
        streamablehttp_client(url) as (read, write, _),
        ClientSession(read, write) as client,
    ):
        await client.initialize()
        tools = sorted(tool.name for tool in (await client.list_tools()).tools)
        results = []
        for name, arguments in calls:
            result = await asyncio.wait_for(client.call_tool(str(name), dict(arguments)), 60)
            text = " ".join(getattr(content, "text", "") for content in result.content)
            results.append({"tool": name, "error": result.isError, "text": text})
        return {"tools": tools, "calls": results}


calls = json.loads(sys.argv[2]) if len(sys.argv) > 2 else []
print(json.dumps(asyncio.run(session(sys.argv[1], calls))))
