"""MCP client workload: sessions that initialize, list tools and call a few of them."""

import asyncio
import json
import socket
import sys
import time

from mcp import ClientSession
from mcp.client.streamable_http import streamablehttp_client

CALLS = [
    ("read_mcp_server_version", {}),
    ("read_account", {}),
    ("list_projects", {}),
    ("read_latest_mcp_server_version", {}),
    ("read_project", {"model": {"projectId": 1}}),
    ("read_project", {"model": {"projectId": "not-a-number"}}),
    ("no_such_tool", {}),
]


async def session(url, calls):
    out = {"calls": []}
    async with streamablehttp_client(url) as (read, write, _), ClientSession(read, write) as s:
        await s.initialize()
        await s.send_ping()
        out["tools"] = sorted(t.name for t in (await s.list_tools()).tools)
        for method in (s.list_prompts, s.list_resources):
            try:
                await method()
            except Exception as error:
                out.setdefault("other_errors", []).append(repr(error)[:120])
        for name, arguments in calls:
            try:
                result = await asyncio.wait_for(s.call_tool(name, arguments), 90)
                text = " ".join(getattr(c, "text", "") for c in result.content)
                out["calls"].append([name, "error" if result.isError else "ok", text[:160]])
            except Exception as error:
                out["calls"].append([name, "exception", repr(error)[:160]])
    return out


async def main(url):
    host = url.split("/")[2].split(":")[0]
    for _ in range(30):  # Docker's DNS may need a moment for a just-created network
        try:
            socket.getaddrinfo(host, 8000)
            break
        except socket.gaierror:
            time.sleep(1)
    first = await session(url, CALLS)
    parallel = await asyncio.gather(*(session(url, CALLS[:3]) for _ in range(3)))
    print(json.dumps({"first": first, "parallel": parallel}))


asyncio.run(main(sys.argv[1]))
