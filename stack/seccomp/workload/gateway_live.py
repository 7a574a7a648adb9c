"""An agent's live deployments through the gateway: one MCP session per node, each calling
create_live_algorithm with a brokerage the gateway's store configures (no secret in the call).
The gateway holds each call until a person decides on the admin side (which the host drives
meanwhile); prints each call's outcome."""

import asyncio
import json
import socket
import sys
import time

from mcp import ClientSession
from mcp.client.streamable_http import streamablehttp_client

url, token, nodes = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
host, port = url.split("/")[2].split(":")
CALL_SECONDS = 240  # the record stack's approval wait, then qc-mcp and the API double


def deployment(node):
    return {
        "model": {
            "versionId": "-1",
            "projectId": 23456789,
            "compileId": "5d1f2cba3a0ec7407c566614300502b5-173e0419674daf4144ce7c9931155ca8",
            "nodeId": node,
            "brokerage": {
                "id": "InteractiveBrokersBrokerage",
                "qcstack-configuration": "ib-canary",
            },
        }
    }


async def deploy(node):
    headers = {"Authorization": "Bearer " + token}
    try:
        async with (
            streamablehttp_client(url, headers=headers) as (read, write, _),
            ClientSession(read, write) as s,
        ):
            await s.initialize()
            result = await asyncio.wait_for(
                s.call_tool("create_live_algorithm", deployment(node)), CALL_SECONDS
            )
            text = " ".join(getattr(c, "text", "") for c in result.content)
            return [node, "error" if result.isError else "ok", text[:400]]
    except Exception as error:
        return [node, "exception", repr(error)[:400]]


async def main():
    for _ in range(30):  # Docker's DNS may need a moment for a just-created network
        try:
            socket.getaddrinfo(host, int(port))
            break
        except socket.gaierror:
            time.sleep(1)
    print(json.dumps(await asyncio.gather(*(deploy(node) for node in nodes))))


asyncio.run(main())
