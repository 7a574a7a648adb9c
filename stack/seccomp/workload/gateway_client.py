"""MCP clients of the gateway: the bearer token refused and required, sessions that list what the
gateway's profile shows and call reads, an unknown tool, a live-trading tool with brokerage
secrets in its arguments, and a rate-limited tool. (session() and wait_for_name():
mcp_session.py, prepended.)"""

import asyncio
import http.client
import json
import sys

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


async def main():
    wait_for_name(host, port)
    report = {"refusals": refusals()}
    report["first"] = await session(url, CALLS, token, shown=200)
    if not lockdown:
        parallel = (session(url, CALLS[:3], token, shown=200) for _ in range(2))
        report["parallel"] = await asyncio.gather(*parallel)
    print(json.dumps(report))


asyncio.run(main())
