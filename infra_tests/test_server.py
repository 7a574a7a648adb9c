"""The hardening leaves the server working: an MCP client on the stack network lists its tools."""

from __future__ import annotations

import json
from pathlib import Path

from infra_tests.conftest import Container
from infra_tests.dockerhost import DockerHost

PROBES = Path(__file__).parent / "probes"
EXPECTED_TOOL_COUNT = 64


def test_mcp_client_lists_every_tool_through_the_hardened_server(
    docker: DockerHost, qc_mcp: Container
) -> None:
    network = next(iter(qc_mcp.attrs["NetworkSettings"]["Networks"]))
    output = docker.check(
        "docker run --rm --network %s --user 10002:10002 --read-only --cap-drop ALL "
        "--security-opt no-new-privileges --entrypoint /usr/bin/python3 %s -c %s %s",
        network,
        qc_mcp.attrs["Image"],
        (PROBES / "mcp_list_tools.py").read_text(),
        "http://qc-mcp:8000/mcp",
    )
    tools = json.loads(output.strip().splitlines()[-1])
    assert len(tools) == EXPECTED_TOOL_COUNT
    assert {"create_live_algorithm", "read_account", "create_backtest"} <= set(tools)
