"""Prepended to the MCP client workloads (workload_source): one session that initializes, pings,
lists tools, prompts and resources and calls tools, and a wait for a just-created network's DNS."""

import asyncio
import socket
import time

from mcp import ClientSession
from mcp.client.streamable_http import streamablehttp_client


def wait_for_name(host, port):
    for _ in range(30):  # Docker's DNS may need a moment for a just-created network
        try:
            socket.getaddrinfo(host, int(port))
            return
        except socket.gaierror:
            time.sleep(1)


async def session(url, calls, token=None, shown=160, call_seconds=90):
    out = {"calls": []}
    headers = {"Authorization": "Bearer " + token} if token else None
    async with (
        streamablehttp_client(url, headers=headers) as (read, write, _),
        ClientSession(read, write) as s,
    ):
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
                result = await asyncio.wait_for(s.call_tool(name, arguments), call_seconds)
                text = " ".join(getattr(c, "text", "") for c in result.content)
                out["calls"].append([name, "error" if result.isError else "ok", text[:shown]])
            except Exception as error:
                out["calls"].append([name, "exception", repr(error)[:shown]])
    return out
