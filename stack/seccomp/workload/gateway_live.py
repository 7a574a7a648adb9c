"""An agent's live deployments through the gateway: one MCP session per node, each calling
create_live_algorithm with a brokerage the gateway's store configures (no secret in the call).
The gateway holds each call until a person decides on the admin side (which the host drives
meanwhile); prints each call's outcome. (session() and wait_for_name(): mcp_session.py.)"""

import asyncio
import json
import sys

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
    try:
        call = [("create_live_algorithm", deployment(node))]
        out = await session(url, call, token, shown=400, call_seconds=CALL_SECONDS)
        _, outcome, text = out["calls"][0]
        return [node, outcome, text]
    except Exception as error:
        return [node, "exception", repr(error)[:400]]


async def main():
    wait_for_name(host, port)
    print(json.dumps(await asyncio.gather(*(deploy(node) for node in nodes))))


asyncio.run(main())
