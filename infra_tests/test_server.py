"""The hardening leaves the server working: an MCP client lists its tools and its tool calls reach
the QuantConnect API double through the egress proxy, correctly signed."""

from __future__ import annotations

from infra_tests.conftest import Container, McpSession, double_records, mcp_session
from infra_tests.dockerhost import DockerHost
from infra_tests.doubles.qc_api import ACCOUNT, PROJECTS
from stack.testdata import CANARY_USER_ID

EXPECTED_TOOL_COUNT = 64


def test_mcp_client_lists_every_tool_through_the_hardened_server(
    docker: DockerHost, project: str, qc_mcp: Container
) -> None:
    session = mcp_session(docker, project, qc_mcp.attrs["Image"], [])
    assert len(session.tools) == EXPECTED_TOOL_COUNT
    assert {"create_live_algorithm", "read_account", "create_backtest"} <= set(session.tools)


def test_read_account_returns_the_api_doubles_answer(tool_calls: McpSession) -> None:
    call = tool_calls.calls["read_account"]
    assert call["error"] is False, call["text"]
    assert ACCOUNT["organizationId"] in call["text"]
    assert str(ACCOUNT["creditBalance"]) in call["text"]


def test_list_projects_returns_the_api_doubles_projects(tool_calls: McpSession) -> None:
    call = tool_calls.calls["list_projects"]
    assert call["error"] is False, call["text"]
    assert PROJECTS["projects"][0]["name"] in call["text"]


def test_api_double_received_correctly_signed_requests_for_each_call(
    docker: DockerHost, api_double: Container, tool_calls: McpSession
) -> None:
    paths = [record["path"] for record in double_records(docker, api_double)]
    assert {"/api/v2/account/read", "/api/v2/projects/read"} <= set(paths)
    for record in double_records(docker, api_double):
        assert record["refused"] is None, record
        assert record["headers"]["timestamp"].isdigit()
        assert record["headers"]["authorization"].startswith("Basic ")
        assert record["user_id"] == CANARY_USER_ID
