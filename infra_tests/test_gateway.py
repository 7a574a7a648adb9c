"""GW controls: the gateway is the only door, applies its policy and limits, and keeps its audit
log through anything, each tried against the running gateway through its loopback port."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import httpx2 as httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from gateway.settings import GatewaySettings
from infra_tests.conftest import (
    GATEWAY_STATE,
    Container,
    StackContainers,
    gateway_audit,
    gateway_calls,
    gateway_client_arguments,
    gateway_client_command,
    gateway_session,
)
from infra_tests.dockerhost import DockerHost
from stack.settings import Settings
from stack.testdata import TEST_GATEWAY_TOKEN

INITIALIZE = json.dumps(
    {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-03-26",
            "capabilities": {},
            "clientInfo": {"name": "qcstack-tests", "version": "1"},
        },
    }
)
# One HTTP request to the gateway's port from the Docker host; prints status and body.
HTTP_REQUEST = """
    import http.client
    port, path, headers, body = int(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("POST", path, body=body.encode(), headers=headers)
    response = connection.getresponse()
    report(status=response.status, body=response.read(2000).decode(errors="replace"))
"""
MCP_HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}


def post(docker: DockerHost, port: int, headers: dict[str, str], path: str = "/mcp") -> Any:
    return docker.host_probe(HTTP_REQUEST, str(port), path, json.dumps(headers), INITIALIZE).data


@pytest.fixture(scope="module")
def gateway(stack_containers: StackContainers) -> Container:
    return stack_containers["gateway"]


@pytest.fixture(scope="module")
def client_image(stack_containers: StackContainers) -> str:
    """The qc-mcp image runs the tests' MCP clients: it has the mcp library."""
    return str(stack_containers["qc-mcp"].attrs["Image"])


VERIFY_AUDIT = f"""
import json
from pathlib import Path
from gateway.audit import verify
result = verify(Path("{GATEWAY_STATE}/audit.jsonl"))
print(json.dumps({{"ok": result.ok, "entries": result.entries, "broken": result.first_broken,
                  "reason": result.reason}}))
"""


# GW-01 ----------------------------------------------------------------------------------------

IMAGE_ENTRYPOINT = ["/usr/bin/python3", "-m", "gateway"]


def runs_the_images_own_code(gateway: Container) -> bool:
    """The gateway's code is what the image holds, started as the image starts it: no entrypoint
    override, no file mounted over or beside it (the guard and the policy live in that code)."""
    mounted = {m["Destination"] for m in gateway.attrs["Mounts"]}
    return gateway.attrs["Config"]["Entrypoint"] == IMAGE_ENTRYPOINT and not any(
        path.startswith(("/app", "/mutant", "/usr")) for path in mounted
    )


@pytest.mark.control("GW-01", "config")
def test_gateway_token_is_a_read_only_secret_file_not_an_environment_value(
    gateway: Container,
) -> None:
    secret = [
        m for m in gateway.attrs["Mounts"] if m["Destination"] == "/run/secrets/gateway_token"
    ]
    assert [(m["Type"], m["RW"]) for m in secret] == [("bind", False)]
    assert not any(TEST_GATEWAY_TOKEN in value for value in gateway.attrs["Config"]["Env"])
    assert runs_the_images_own_code(gateway)


@pytest.mark.control("GW-01", "behaviour")
@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-token"),
        pytest.param({"Authorization": "Bearer not-the-gateway-token-at-all"}, id="wrong-token"),
        pytest.param({"Authorization": f"Bearer {TEST_GATEWAY_TOKEN[:-1]}"}, id="token-prefix"),
        pytest.param({"Authorization": f"Bearer {TEST_GATEWAY_TOKEN}x"}, id="token-plus-one"),
        pytest.param(
            {"Authorization": "Basic " + base64.b64encode(TEST_GATEWAY_TOKEN.encode()).decode()},
            id="basic-scheme",
        ),
        pytest.param({"X-Api-Key": TEST_GATEWAY_TOKEN}, id="other-header"),
        pytest.param({"Cookie": f"token={TEST_GATEWAY_TOKEN}"}, id="cookie"),
    ],
)
def test_mcp_request_without_the_bearer_token_is_refused(
    docker: DockerHost, settings: Settings, headers: dict[str, str]
) -> None:
    answer = post(docker, settings.test_gateway_port, {**MCP_HEADERS, **headers})
    assert answer["status"] == 401, answer


@pytest.mark.control("GW-01", "behaviour")
def test_token_in_the_query_string_is_refused(docker: DockerHost, settings: Settings) -> None:
    path = f"/mcp?token={TEST_GATEWAY_TOKEN}&access_token={TEST_GATEWAY_TOKEN}"
    assert post(docker, settings.test_gateway_port, MCP_HEADERS, path)["status"] == 401


@pytest.mark.control("GW-01", "behaviour")
def test_client_with_the_token_gets_tools_through_the_relay(
    docker: DockerHost, settings: Settings, client_image: str
) -> None:
    session = gateway_session(docker, settings, client_image, [])
    assert "read_account" in session.tools


# GW-02 ----------------------------------------------------------------------------------------


@pytest.mark.control("GW-02", "config")
def test_gateway_runs_the_repositorys_tool_classification(
    docker: DockerHost, gateway: Container, settings: Settings
) -> None:
    running = docker.check(
        "docker exec %s /usr/bin/python3 -c %s",
        gateway.id,
        "print(open('/app/gateway/tools.py').read(), end='')",
    )
    assert running == (settings.repo_root / "gateway" / "tools.py").read_text()
    assert runs_the_images_own_code(gateway)
    env = dict(e.split("=", 1) for e in gateway.attrs["Config"]["Env"])
    assert env.get("QCSTACK_GATEWAY_PROFILE", "research") in {"research", "paper", "live"}


@pytest.mark.control("GW-02", "behaviour")
def test_unclassified_tool_is_denied_by_the_gateway_itself(
    docker: DockerHost, settings: Settings, client_image: str
) -> None:
    # A tool a newer qc-mcp might add: refused by name, before anything reaches qc-mcp.
    session = gateway_session(docker, settings, client_image, [("delete_all_projects", {})])
    call = session.calls["delete_all_projects"]
    assert call["error"] is True
    assert "is not classified by this gateway" in call["text"], call["text"]


# GW-06 ----------------------------------------------------------------------------------------

LIMITED_TOOL = "read_mcp_server_version"  # limited to 3 per hour in compose/test.yaml


@pytest.mark.control("GW-06", "config")
def test_rate_limits_come_from_settings(gateway: Container) -> None:
    env = dict(e.split("=", 1) for e in gateway.attrs["Config"]["Env"])
    assert json.loads(env["QCSTACK_GATEWAY_RATE_LIMITS"]) == {LIMITED_TOOL: "3/3600"}
    assert "QCSTACK_GATEWAY_DEFAULT_RATE_LIMIT" not in env  # the gateway's default holds


@pytest.mark.control("GW-06", "behaviour")
def test_agent_calling_past_its_rate_limit_is_refused(
    docker: DockerHost, settings: Settings, client_image: str
) -> None:
    results = gateway_calls(docker, settings, client_image, [(LIMITED_TOOL, {})] * 4)["calls"]
    assert [r["error"] for r in results][-1] is True
    assert "rate limit" in results[-1]["text"], results[-1]["text"]


# GW-07 ----------------------------------------------------------------------------------------


@pytest.mark.control("GW-07", "config")
def test_audit_log_lives_on_the_named_state_volume(gateway: Container, project: str) -> None:
    state = [m for m in gateway.attrs["Mounts"] if m["Destination"] == GATEWAY_STATE]
    assert [(m["Type"], m.get("Name"), m["RW"]) for m in state] == [
        ("volume", f"{project}_gateway_state", True)
    ]


@pytest.mark.control("GW-07", "behaviour")
def test_every_call_is_in_the_hash_chained_audit_log(
    docker: DockerHost, settings: Settings, gateway: Container, client_image: str
) -> None:
    marker = f"audit-probe-{time.time_ns()}"
    gateway_session(docker, settings, client_image, [("read_project", {"projectId": marker})])
    entries = [e for e in gateway_audit(docker, gateway) if marker in json.dumps(e)]
    assert [e["event"] for e in entries][:1] == ["allow"], entries
    assert entries[-1]["event"] in {"completed", "failed"}
    verified = json.loads(
        docker.check("docker exec %s /usr/bin/python3 -c %s", gateway.id, VERIFY_AUDIT)
    )
    assert verified["ok"] is True, verified


@pytest.mark.control("GW-07", "behaviour")
def test_gateway_killed_mid_stream_loses_no_entry_and_tears_none(
    docker: DockerHost, settings: Settings, gateway: Container, client_image: str, project: str
) -> None:
    before = gateway_audit(docker, gateway)
    client = f"{project}-audit-load"
    # The client runs detached on the Docker host (local or a VM over SSH), beside the gateway.
    command = gateway_client_command(docker, client_image, name=client)
    arguments = gateway_client_arguments(settings, [("read_account", {})] * 200)
    docker.check(
        command.replace("docker run ", "docker run -d ", 1) + " %s" * len(arguments), *arguments
    )
    try:
        deadline = time.monotonic() + 60
        while len(gateway_audit(docker, gateway)) < len(before) + 20:
            assert time.monotonic() < deadline, "the load never reached the gateway"
            time.sleep(0.2)
        docker.check("kill -KILL %s", str(docker.main_pid(gateway.id)))
    finally:
        docker.run("docker rm -f %s", client)  # its session died with the gateway
        docker.check("docker start %s", gateway.id)
        wait_healthy(docker, gateway.id)
    after = gateway_audit(docker, gateway)  # each line parsed: a torn one would fail here
    assert after[: len(before)] == before
    assert len(after) > len(before) + 20
    verified = json.loads(
        docker.check("docker exec %s /usr/bin/python3 -c %s", gateway.id, VERIFY_AUDIT)
    )
    assert verified["ok"] is True, verified


def wait_healthy(docker: DockerHost, container: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = docker.inspect("container", container)["State"]
        if state.get("Health", {}).get("Status") == "healthy":
            return
        time.sleep(0.5)
    raise AssertionError(f"{container} did not become healthy in {timeout:.0f}s")


# GW-08 ----------------------------------------------------------------------------------------

EFFECTIVE_LIMITS = """
from gateway.settings import GatewaySettings
settings = GatewaySettings()
print(settings.max_request_bytes, settings.max_json_depth)
"""


@pytest.mark.control("GW-08", "config")
def test_gateway_runs_with_bounded_request_size_and_depth(
    docker: DockerHost, gateway: Container
) -> None:
    output = docker.check("docker exec %s /usr/bin/python3 -c %s", gateway.id, EFFECTIVE_LIMITS)
    size, depth = map(int, output.split())
    assert 0 < size <= 16 * 1024 * 1024 and 0 < depth <= 64
    assert runs_the_images_own_code(gateway)


def skip_unless_local(docker: DockerHost) -> None:
    if docker.host.backend.NAME != "local":
        pytest.skip("the fuzz test sends from the test runner: run it on the stack's Docker host")


def authorized(content_type: str = "application/json") -> dict[str, str]:
    return {
        "Authorization": f"Bearer {TEST_GATEWAY_TOKEN}",
        "Content-Type": content_type,
        "Accept": "application/json, text/event-stream",
    }


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=30,
)
HOSTILE_BODIES = st.one_of(
    st.binary(max_size=2000),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    st.builds(
        lambda method, params, ident: json.dumps(
            {"jsonrpc": "2.0", "id": ident, "method": method, "params": params}
        ).encode(),
        st.sampled_from(["tools/call", "tools/list", "initialize", "no/such/method", ""])
        | st.text(max_size=30),
        JSON_VALUES,
        st.integers() | st.text(max_size=10) | st.none(),
    ),
    st.integers(min_value=33, max_value=100_000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(min_value=2, max_value=8).map(lambda mb: b'"' + b"x" * (mb * 1024 * 1024) + b'"'),
)


@pytest.mark.control("GW-08", "behaviour")
@hypothesis_settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    body=HOSTILE_BODIES,
    content_type=st.sampled_from(
        ["application/json", "text/plain", "", "application/x-www-form-urlencoded"]
    ),
)
def test_hostile_requests_get_client_errors_and_never_take_the_gateway_down(
    docker: DockerHost, settings: Settings, body: bytes, content_type: str
) -> None:
    skip_unless_local(docker)
    url = f"http://127.0.0.1:{settings.test_gateway_port}/mcp"
    answer = httpx.post(url, content=body, headers=authorized(content_type), timeout=30)
    assert answer.status_code < 500, (answer.status_code, answer.text[:300])
    if answer.status_code >= 400 and answer.headers.get("content-type", "").startswith(
        "application/json"
    ):
        assert "error" in answer.json()


@pytest.mark.control("GW-08", "behaviour")
def test_gateway_still_serves_after_the_fuzz(
    docker: DockerHost, settings: Settings, gateway: Container, client_image: str
) -> None:
    state = docker.inspect("container", gateway.id)["State"]
    assert state["Running"] and state["Health"]["Status"] == "healthy"
    session = gateway_session(docker, settings, client_image, [])
    assert "read_account" in session.tools


# GW-09 ----------------------------------------------------------------------------------------

EFFECTIVE_SESSIONS = """
from gateway.settings import GatewaySettings
settings = GatewaySettings()
print(settings.max_sessions, settings.session_idle_seconds)
"""


def session_cap(settings: Settings) -> int:
    """The cap the stack's settings give the gateway (the memory limit is sized for it)."""
    return GatewaySettings(**settings.gateway).max_sessions


@pytest.mark.control("GW-09", "config")
def test_gateway_runs_with_a_session_cap_and_an_idle_timeout(
    docker: DockerHost, settings: Settings, gateway: Container
) -> None:
    output = docker.check("docker exec %s /usr/bin/python3 -c %s", gateway.id, EFFECTIVE_SESSIONS)
    cap, idle = output.split()
    assert int(cap) == session_cap(settings) <= 128 and 0 < float(idle) <= 3600


@pytest.mark.control("GW-09", "behaviour")
def test_opening_sessions_without_end_is_refused_and_the_gateway_stays_up(
    docker: DockerHost, settings: Settings, gateway: Container, client_image: str
) -> None:
    skip_unless_local(docker)
    cap = session_cap(settings)
    url = f"http://127.0.0.1:{settings.test_gateway_port}/mcp"
    opened: list[str] = []
    with httpx.Client(headers=authorized(), timeout=30) as http:
        try:
            refused = None
            for _ in range(cap + 1):
                answer = http.post(url, content=INITIALIZE)
                if answer.status_code != 200:
                    refused = answer
                    break
                opened.append(answer.headers["mcp-session-id"])
            assert refused is not None and refused.status_code == 503, len(opened)
            assert len(opened) <= cap
        finally:
            for session in opened:  # the suite's other tests need room
                http.delete(url, headers={"mcp-session-id": session})
    state = docker.inspect("container", gateway.id)["State"]
    assert state["Running"] and not state["OOMKilled"]
    assert "read_account" in gateway_session(docker, settings, client_image, []).tools
