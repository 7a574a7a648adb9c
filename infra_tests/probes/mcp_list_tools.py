"""Probe run inside a client container on the stack's internal network: lists qc-mcp's tools."""

import asyncio
import json
import sys

from mcp import ClientSession
from mcp.client.streamable_http import streamablehttp_client


async def list_tools(url: str) -> list[str]:
    async with (
        streamablehttp_client(url) as (read, write, _),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        result = await session.list_tools()
        return sorted(tool.name for tool in result.tools)


print(json.dumps(asyncio.run(list_tools(sys.argv[1]))))
