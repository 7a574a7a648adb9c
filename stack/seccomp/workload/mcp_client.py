"""MCP client workload: sessions that initialize, list tools and call a few of them (session() and
wait_for_name() come from mcp_session.py, prepended)."""

import asyncio
import json
import sys

CALLS = [
    ("read_mcp_server_version", {}),
    ("read_account", {}),
    ("list_projects", {}),
    ("read_latest_mcp_server_version", {}),
    ("read_project", {"model": {"projectId": 1}}),
    ("read_project", {"model": {"projectId": "not-a-number"}}),
    ("no_such_tool", {}),
]


async def main(url):
    wait_for_name(url.split("/")[2].split(":")[0], 8000)
    first = await session(url, CALLS)
    parallel = await asyncio.gather(*(session(url, CALLS[:3]) for _ in range(3)))
    print(json.dumps({"first": first, "parallel": parallel}))


asyncio.run(main(sys.argv[1]))
