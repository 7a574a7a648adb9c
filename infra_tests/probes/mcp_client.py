"""Probe run in a client container of the tests: lists the MCP server's tools at argv[1] and calls
the ones named in argv[2] (a JSON list of [name, arguments]), with the bearer token in the file
argv[3] if given (never on the command line, which test output would show); prints one JSON
line."""

import asyncio
import json
import sys
from pathlib import Path

from mcp import ClientSession
from mcp.client.streamable_http import streamablehttp_client


async def session(url: str, calls: list[list[object]], token: str) -> dict[str, object]:
    headers = {"Authorization": f"Bearer {token}"} if token else None
    async with (
        streamablehttp_client(url, headers=headers) as (read, write, _),
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
token = Path(sys.argv[3]).read_text().strip() if len(sys.argv) > 3 else ""
print(json.dumps(asyncio.run(session(sys.argv[1], calls, token))))
