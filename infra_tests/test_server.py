"""The hardening leaves the server working: an MCP client lists its tools and its tool calls reach
the QuantConnect API double through the egress proxy, correctly signed."""

from __future__ import annotations

import pytest

from gateway.tools import TOOL_KINDS
from infra_tests.conftest import Container, McpSession, double_records
from infra_tests.dockerhost import DockerHost
from infra_tests.doubles.qc_api import ACCOUNT, PROJECTS
from stack.testdata import CANARY_API_TOKEN, CANARY_USER_ID

EXPECTED_TOOL_COUNT = 64
PROBE_AGENT = "qcstack-signature-probe"  # the tests' own requests to the double, told apart


def test_mcp_client_lists_every_tool_through_the_hardened_server(tool_calls: McpSession) -> None:
    assert len(tool_calls.tools) == EXPECTED_TOOL_COUNT
    assert {"create_live_algorithm", "read_account", "create_backtest"} <= set(tool_calls.tools)


def test_gateway_classifies_exactly_the_tools_the_server_lists(tool_calls: McpSession) -> None:
    # A tool the gateway does not know is denied; one it knows that is gone is a stale policy.
    assert set(tool_calls.tools) == set(TOOL_KINDS)


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
    records = [
        r
        for r in double_records(docker, api_double)
        if r["headers"].get("user-agent") != PROBE_AGENT
    ]
    assert {"/api/v2/account/read", "/api/v2/projects/read"} <= {r["path"] for r in records}
    for record in records:
        assert record["refused"] is None, record
        assert record["headers"]["timestamp"].isdigit()
        assert record["headers"]["authorization"].startswith("Basic ")
        assert record["user_id"] == CANARY_USER_ID


# A request to the API double as qc-mcp would send it (through the proxy, TLS verified against
# the test CA), but signed as told: the double must refuse what the real API refuses.
SIGNED_REQUEST = """
    import base64, hashlib, http.client, ssl, time
    user_id, token, skew = sys.argv[1], sys.argv[2], int(sys.argv[3])
    timestamp = str(int(time.time()) + skew)
    hashed = hashlib.sha256(f"{token}:{timestamp}".encode()).hexdigest()
    authorization = "Basic " + base64.b64encode(f"{user_id}:{hashed}".encode()).decode()
    context = ssl.create_default_context(cafile="/run/secrets/qc_test_ca")
    connection = http.client.HTTPSConnection("egress-proxy", 3128, context=context, timeout=10)
    connection.set_tunnel("www.quantconnect.com", 443)
    connection.request("POST", "/api/v2/authenticate", body=b"{}",
                       headers={"Timestamp": timestamp, "Authorization": authorization,
                                "User-Agent": sys.argv[4]})
    report(**json.loads(connection.getresponse().read()))
"""


@pytest.mark.parametrize(
    ("token", "skew", "refusal"),
    [
        (CANARY_API_TOKEN, 0, None),
        ("not-the-token", 0, "Hash doesn't match"),
        (CANARY_API_TOKEN, -3600, "Invalid timestamp"),
    ],
    ids=["correct", "wrong-token", "stale-timestamp"],
)
def test_api_double_checks_signatures_as_the_real_api_does(
    docker: DockerHost, qc_mcp: Container, token: str, skew: int, refusal: str | None
) -> None:
    answer = docker.probe(
        qc_mcp.id, SIGNED_REQUEST, CANARY_USER_ID, token, str(skew), PROBE_AGENT
    ).data
    assert answer["success"] is (refusal is None), answer
    if refusal:
        assert refusal in answer["errors"][0]
