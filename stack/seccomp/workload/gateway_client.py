"""MCP clients of the gateway: the bearer token refused and required, sessions that list what the
gateway's profile shows and call reads, an unknown tool, a live-trading tool with brokerage
secrets in its arguments, and a rate-limited tool."""

import asyncio
import http.client
import json
import socket
import sys
import time

from mcp import ClientSession
from mcp.client.streamable_http import streamablehttp_client

url, token, lockdown = sys.argv[1], sys.argv[2], sys.argv[3] == "lockdown"
host, port = url.split("/")[2].split(":")
# A deployment whose brokerage settings carry secrets: the gateway refuses it (brokerage settings
# come from its own store, or it is locked down) and redacts the secrets before it writes the
# audit entry.
DEPLOY = {
    "model": {
        "projectId": 1,
        "compileId": "qcrec-compile",
        "nodeId": "LN-qcrec",
        "brokerage": {
            "id": "InteractiveBrokersBrokerage",
            "ib-user-name": "qcrec",
            "ib-password": "qcrec-canary-brokerage-password",
            "ib-account": "DU000000",
        },
    }
}
if lockdown:
    CALLS = [
        ("read_account", {}),
        ("create_project", {"model": {"name": "qcrec-locked", "language": "Py"}}),
        ("create_live_algorithm", DEPLOY),
    ]
else:
    CALLS = [
        ("read_mcp_server_version", {}),
        ("read_account", {}),
        ("list_projects", {}),
        ("read_project", {"model": {"projectId": 1}}),
        ("read_project", {"model": {"projectId": "not-a-number"}}),
        ("no_such_tool", {}),
        ("create_live_algorithm", DEPLOY),
        # the record stack limits it to one call an hour: the second is refused
        ("read_latest_mcp_server_version", {}),
        ("read_latest_mcp_server_version", {}),
    ]


def raw(method, path, headers, body=None):
    """One plain HTTP request; (status, the start of the body), or the error."""
    try:
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        answer = [response.status, response.read(200).decode("utf-8", "replace")]
        connection.close()
        return answer
    except (OSError, http.client.HTTPException) as error:
        return ["error", repr(error)[:160]]


def refusals():
    initialize = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-03-26",
                "capabilities": {},
                "clientInfo": {"name": "qcrec", "version": "0"},
            },
        }
    )
    mcp_headers = {
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
    }
    return {
        "no token": raw("POST", "/mcp", mcp_headers, initialize),
        "wrong token": raw(
            "POST", "/mcp", {**mcp_headers, "Authorization": "Bearer qcrec-wrong-token"}, initialize
        ),
        "healthz": raw("GET", "/healthz", {}),
    }


async def session(calls):
    out = {"calls": []}
    headers = {"Authorization": "Bearer " + token}
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
                result = await asyncio.wait_for(s.call_tool(name, arguments), 90)
                text = " ".join(getattr(c, "text", "") for c in result.content)
                out["calls"].append([name, "error" if result.isError else "ok", text[:200]])
            except Exception as error:
                out["calls"].append([name, "exception", repr(error)[:200]])
    return out


async def main():
    for _ in range(30):  # Docker's DNS may need a moment for a just-created network
        try:
            socket.getaddrinfo(host, int(port))
            break
        except socket.gaierror:
            time.sleep(1)
    report = {"refusals": refusals()}
    report["first"] = await session(CALLS)
    if not lockdown:
        report["parallel"] = await asyncio.gather(*(session(CALLS[:3]) for _ in range(2)))
    print(json.dumps(report))


asyncio.run(main())
