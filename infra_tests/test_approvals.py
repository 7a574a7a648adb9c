"""GW-03, GW-04 and GW-05 on the running stack: a held live deployment is approved by a person in a
real headless Chromium before it runs, with brokerage credentials the gateway fills in from its
own store; the responder's token engages lockdown, which only an admin lifts; the agent's bearer
token does neither."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport

from gateway.brokerages import CONFIGURATION_KEY
from infra_tests.conftest import (
    GATEWAY_STATE,
    Container,
    double_records,
    gateway_audit,
    stack_container,
)
from infra_tests.dockerhost import DockerHost
from infra_tests.doubles.qc_api import BACKTESTS, LIVE_CREATED
from stack.settings import Settings
from stack.testdata import (
    CANARY_BROKERAGE_PASSWORD,
    TEST_ADMIN_NAME,
    TEST_ADMIN_PASSWORD,
    TEST_GATEWAY_TOKEN,
    TEST_RESPONDER_TOKEN,
)

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
BROKERAGE_PASSWORD = CANARY_BROKERAGE_PASSWORD  # in the gateway's store; never to be shown
DEPLOY = {
    "model": {
        "versionId": "-1",
        "projectId": 23456789,
        "compileId": "5d1f2cba3a0ec7407c566614300502b5-173e0419674daf4144ce7c9931155ca8",
        "nodeId": "LN-c54129e1b4f667613d3f34542b787771",
        # The agent names the operator's configuration; the gateway fills in its settings.
        "brokerage": {"id": "InteractiveBrokersBrokerage", CONFIGURATION_KEY: "ib-canary"},
    }
}
CALL_SECONDS = 150.0


@pytest.fixture(scope="module")
def gateway_url(settings: Settings, is_local: bool) -> str:
    """The gateway as MCP clients and admins reach it: the relay's port on the host's loopback."""
    if not is_local:
        pytest.skip(
            "the browser and MCP clients of these tests run on the controller, and a deployed "
            "VM's gateway port is on the VM's loopback alone (NET-01), with SSH forwarding off "
            "(HOST-01)"
        )
    return f"http://127.0.0.1:{settings.test_gateway_port}"


@pytest.fixture(scope="module")
def gateway(docker: DockerHost, project: str) -> Container:
    return stack_container(docker, project, "gateway")


@pytest.fixture(scope="module")
def calls(gateway_url: str) -> Iterator[ThreadPoolExecutor]:
    """Threads for MCP calls; a call a failed test left held is denied at the end, not awaited."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        yield pool
        _, left = admin_api(gateway_url, "GET", "/approvals?state=pending")
        for approval in left if isinstance(left, list) else []:
            admin_api(gateway_url, "POST", f"/approvals/{approval['id']}/deny")


async def _call_tool(url: str, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    transport = StreamableHttpTransport(
        f"{url}/mcp", headers={"Authorization": f"Bearer {TEST_GATEWAY_TOKEN}"}
    )
    async with Client(transport, timeout=CALL_SECONDS) as client:
        result = await client.call_tool(tool, arguments, raise_on_error=False)
    text = " ".join(getattr(content, "text", "") for content in result.content)
    return {"error": result.is_error, "text": text}


def start_call(
    calls: ThreadPoolExecutor, url: str, tool: str, arguments: dict[str, Any]
) -> Future[dict[str, Any]]:
    """An MCP client's tool call through the gateway, on a thread of its own (it may be held)."""
    return calls.submit(asyncio.run, _call_tool(url, tool, arguments))


def admin_api(
    url: str,
    method: str,
    path: str,
    *,
    body: dict[str, Any] | None = None,
    authorization: str | None = None,
) -> tuple[int, Any]:
    if authorization is None:
        pair = f"{TEST_ADMIN_NAME}:{TEST_ADMIN_PASSWORD}".encode()
        authorization = "Basic " + base64.b64encode(pair).decode()
    headers = {"Authorization": authorization, "Content-Type": "application/json"}
    data = json.dumps(body or {}).encode() if method == "POST" else None
    request = urllib.request.Request(  # noqa: S310 -- the test stack's loopback port
        f"{url}/admin/api{path}", data=data, headers=headers, method=method
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def deployment() -> dict[str, Any]:
    """DEPLOY on a node of its own, so each test finds its own call among the held ones."""
    return {"model": {**DEPLOY["model"], "nodeId": f"LN-{secrets.token_hex(16)}"}}


def held_approval(url: str, pending: Future[dict[str, Any]], node: str) -> dict[str, Any]:
    """The pending approval of the create_live_algorithm call in flight on `node`."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert not pending.done(), f"the held call ended before a decision: {pending.result()}"
        status, approvals = admin_api(url, "GET", "/approvals?state=pending")
        assert status == 200, approvals
        mine = [a for a in approvals if a["summary"]["Node"] == node]
        if mine:
            assert len(mine) == 1, mine
            assert mine[0]["tool"] == "create_live_algorithm"
            return dict(mine[0])
        time.sleep(0.25)
    raise AssertionError("create_live_algorithm was not held for approval within 60s")


def live_creations(docker: DockerHost, api_double: Container) -> list[dict[str, Any]]:
    return [r for r in double_records(docker, api_double) if r["path"].endswith("/live/create")]


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """A real headless Chromium with a fresh profile, driven by Debian's chromedriver."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    for binary in (CHROMIUM, CHROMEDRIVER):
        assert shutil.which(binary), f"{binary} is missing: run scripts/install-browser"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def sign_in(browser: Any, url: str) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{url}/admin/")
    assert browser.current_url == f"{url}/admin/login", "no login was asked for"
    browser.find_element(By.NAME, "name").send_keys(TEST_ADMIN_NAME)
    browser.find_element(By.NAME, "password").send_keys(TEST_ADMIN_PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    settle(browser, lambda b: b.current_url == f"{url}/admin/")


def settle(browser: Any, condition: Any) -> None:
    """Waits for the page a click led to (a click returns before the navigation ends)."""
    from selenium.common.exceptions import TimeoutException, WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    # Mid-navigation, an element of the page being left can vanish under the condition
    # (Chromium: "Node with given id does not belong to the document"): poll again.
    try:
        WebDriverWait(
            browser, 15, poll_frequency=0.1, ignored_exceptions=[WebDriverException]
        ).until(condition)
    except TimeoutException:
        raise AssertionError(f"at {browser.current_url}: {browser.page_source}") from None


@pytest.mark.control("GW-03", "behaviour")
@pytest.mark.control("GW-04", "behaviour")
def test_person_approves_a_held_live_deployment_in_a_browser_and_only_then_it_runs(
    docker: DockerHost,
    gateway: Container,
    api_double: Container,
    gateway_url: str,
    calls: ThreadPoolExecutor,
    browser: Any,
) -> None:
    from selenium.webdriver.common.by import By

    arguments = deployment()
    before = len(live_creations(docker, api_double))
    pending = start_call(calls, gateway_url, "create_live_algorithm", arguments)
    approval = held_approval(gateway_url, pending, arguments["model"]["nodeId"])
    assert len(live_creations(docker, api_double)) == before

    sign_in(browser, gateway_url)
    listing = browser.page_source
    assert approval["id"] in listing and "InteractiveBrokersBrokerage" in listing
    browser.find_element(By.LINK_TEXT, approval["id"]).click()
    settle(browser, lambda b: b.current_url.endswith(f"/admin/approvals/{approval['id']}"))
    detail = browser.find_element(By.TAG_NAME, "body").text
    model = arguments["model"]
    for shown in ("create_live_algorithm", "23456789", model["compileId"], model["nodeId"]):
        assert shown in detail
    assert "InteractiveBrokersBrokerage" in detail
    assert BACKTESTS["backtests"][0]["name"] in detail  # the latest backtest, from the double
    assert BROKERAGE_PASSWORD not in browser.page_source
    assert not pending.done()

    browser.find_element(By.CSS_SELECTOR, "button[value=approve]").click()
    approved = f"approved by {TEST_ADMIN_NAME}"
    settle(browser, lambda b: approved in b.find_element(By.TAG_NAME, "body").text)

    answer = pending.result(timeout=CALL_SECONDS)
    assert answer["error"] is False, answer["text"]
    assert LIVE_CREATED["deployId"] in answer["text"]
    created = live_creations(docker, api_double)[before:]
    assert len(created) == 1
    # The deployment went to QuantConnect with the stored settings the gateway filled in.
    assert BROKERAGE_PASSWORD in created[0]["body"]
    assert CONFIGURATION_KEY not in created[0]["body"]

    events = [e for e in gateway_audit(docker, gateway) if e.get("approval") == approval["id"]]
    assert [e["event"] for e in events] == ["waiting", "admin-approve", "approved"]
    assert events[-1]["approved_by"] == TEST_ADMIN_NAME
    assert BROKERAGE_PASSWORD not in json.dumps(gateway_audit(docker, gateway))


@pytest.mark.control("GW-03", "behaviour")
def test_denied_live_deployment_never_reaches_quantconnect(
    docker: DockerHost, api_double: Container, gateway_url: str, calls: ThreadPoolExecutor
) -> None:
    before = len(live_creations(docker, api_double))
    arguments = deployment()
    pending = start_call(calls, gateway_url, "create_live_algorithm", arguments)
    approval = held_approval(gateway_url, pending, arguments["model"]["nodeId"])
    status, decided = admin_api(gateway_url, "POST", f"/approvals/{approval['id']}/deny")
    assert (status, decided["decided_by"]) == (200, TEST_ADMIN_NAME)
    answer = pending.result(timeout=CALL_SECONDS)
    assert answer["error"] is True and "denied" in answer["text"]
    assert len(live_creations(docker, api_double)) == before


@pytest.mark.control("GW-03", "behaviour")
@pytest.mark.parametrize(
    "authorization",
    [
        f"Bearer {TEST_GATEWAY_TOKEN}",
        "Basic " + base64.b64encode(b"agent:" + TEST_GATEWAY_TOKEN.encode()).decode(),
    ],
    ids=["as-bearer", "as-basic-password"],
)
def test_agents_bearer_token_cannot_approve_its_own_call(
    gateway_url: str, calls: ThreadPoolExecutor, authorization: str
) -> None:
    arguments = deployment()
    pending = start_call(calls, gateway_url, "create_live_algorithm", arguments)
    approval = held_approval(gateway_url, pending, arguments["model"]["nodeId"])
    path = f"/approvals/{approval['id']}/approve"
    status, _ = admin_api(gateway_url, "POST", path, authorization=authorization)
    assert status == 401
    admin_api(gateway_url, "POST", f"/approvals/{approval['id']}/deny")
    assert pending.result(timeout=CALL_SECONDS)["error"] is True


@pytest.mark.control("GW-03", "config")
def test_gateway_holds_live_trading_and_reads_admins_from_a_read_only_secret(
    docker: DockerHost, gateway: Container
) -> None:
    environment = dict(e.split("=", 1) for e in gateway.attrs["Config"]["Env"])
    assert environment["QCSTACK_GATEWAY_PROFILE"] == "live"
    mounts = {m["Destination"]: m for m in gateway.attrs["Mounts"]}
    for secret in ("gateway_admins", "gateway_token"):
        mount = mounts[f"/run/secrets/{secret}"]
        assert mount["RW"] is False
        source = docker.host.file(mount["Source"])
        assert (source.uid, source.mode) == (10004, 0o400), mount["Source"]
    # No credential is in the environment, where `docker inspect` would show it.
    assert not [v for v in environment.values() if TEST_ADMIN_PASSWORD in v]


@pytest.mark.control("GW-05", "config")
def test_responder_token_is_a_secret_of_its_own_and_lockdown_lives_on_the_state_volume(
    docker: DockerHost, gateway: Container
) -> None:
    mounts = {m["Destination"]: m for m in gateway.attrs["Mounts"]}
    responder = mounts["/run/secrets/gateway_responder_token"]
    assert responder["RW"] is False
    source = docker.host.file(responder["Source"])
    assert (source.uid, source.mode) == (10004, 0o400)
    assert mounts[GATEWAY_STATE]["Type"] == "volume" and mounts[GATEWAY_STATE]["RW"] is True


@pytest.mark.control("GW-05", "behaviour")
def test_responder_engages_lockdown_which_stops_compute_until_an_admin_lifts_it(
    docker: DockerHost, gateway: Container, gateway_url: str, calls: ThreadPoolExecutor
) -> None:
    responder = f"Bearer {TEST_RESPONDER_TOKEN}"
    agent = f"Bearer {TEST_GATEWAY_TOKEN}"
    status, state = admin_api(
        gateway_url, "POST", "/lockdown/engage", body={"reason": "drill"}, authorization=responder
    )
    assert (status, state["locked"], state["by"]) == (200, True, "responder")
    try:
        backtest = {"model": {"projectId": 23456789, "compileId": "c", "backtestName": "b"}}
        refused = start_call(calls, gateway_url, "create_backtest", backtest).result(CALL_SECONDS)
        assert refused["error"] is True and "lockdown" in refused["text"]
        for authorization in (responder, agent):
            status, _ = admin_api(
                gateway_url, "POST", "/lockdown/lift", authorization=authorization
            )
            assert status in (401, 403)
        assert admin_api(gateway_url, "GET", "/lockdown")[1]["locked"] is True
        # It outlives a restart of the gateway: the flag is on the state volume.
        docker.check("docker restart %s", gateway.id)
        wait_until_healthy(docker, gateway.id)
        assert admin_api(gateway_url, "GET", "/lockdown")[1]["locked"] is True
    finally:
        status, state = admin_api(gateway_url, "POST", "/lockdown/lift")
    assert (status, state["locked"], state["by"]) == (200, False, TEST_ADMIN_NAME)
    events = [e["event"] for e in gateway_audit(docker, gateway)]
    assert "lockdown-engaged" in events and events[-1] == "lockdown-lifted"


@pytest.mark.control("GW-05", "behaviour")
def test_agents_bearer_token_can_neither_engage_nor_lift_lockdown(gateway_url: str) -> None:
    agent = f"Bearer {TEST_GATEWAY_TOKEN}"
    for action in ("engage", "lift"):
        status, _ = admin_api(
            gateway_url, "POST", f"/lockdown/{action}", body={"reason": "x"}, authorization=agent
        )
        assert status == 401
    assert admin_api(gateway_url, "GET", "/lockdown")[1]["locked"] is False


def wait_until_healthy(docker: DockerHost, container: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        health = docker.check("docker inspect -f {{.State.Health.Status}} %s", container).strip()
        if health == "healthy":
            return
        time.sleep(0.5)
    raise AssertionError(f"{container} did not become healthy again within 60s")


def test_audit_log_verifies_inside_the_gateway(docker: DockerHost, gateway: Container) -> None:
    result = docker.run("docker exec %s /usr/bin/python3 -m gateway.audit verify", gateway.id)
    assert result.rc == 0, result.stderr
    assert "intact" in result.stdout


@pytest.mark.control("GW-04", "config")
def test_brokerage_store_is_a_read_only_secret_file_of_the_gateway(
    docker: DockerHost, gateway: Container, project: str
) -> None:
    store = [m for m in gateway.attrs["Mounts"] if m["Destination"].endswith("/gateway_brokerages")]
    assert [(m["Destination"], m["Type"], m["RW"]) for m in store] == [
        ("/run/secrets/gateway_brokerages", "bind", False)
    ]
    for service in ("gateway", "gateway-relay", "qc-mcp", "egress-proxy"):
        container = docker.container_id(project, service)
        assert BROKERAGE_PASSWORD not in docker.check("docker inspect %s", container), service


@pytest.mark.control("GW-04", "behaviour")
def test_agent_sending_brokerage_credentials_itself_is_refused(
    docker: DockerHost, gateway: Container, gateway_url: str, calls: ThreadPoolExecutor
) -> None:
    typed = f"agent-typed-password-{secrets.token_hex(8)}"
    arguments = deployment()
    arguments["model"]["brokerage"] = {"id": "InteractiveBrokersBrokerage", "ib-password": typed}
    answer = start_call(calls, gateway_url, "create_live_algorithm", arguments).result(
        timeout=CALL_SECONDS
    )
    assert answer["error"] is True and "come from the gateway's store" in answer["text"]
    assert typed not in answer["text"]
    _, pending = admin_api(gateway_url, "GET", "/approvals?state=pending")
    assert [a for a in pending if a["summary"].get("Node") == arguments["model"]["nodeId"]] == []
    assert typed not in json.dumps(gateway_audit(docker, gateway))


@pytest.mark.control("GW-04", "behaviour")
def test_filled_brokerage_password_appears_in_no_log_of_the_stack(
    docker: DockerHost,
    project: str,
    api_double: Container,
    gateway_url: str,
    calls: ThreadPoolExecutor,
) -> None:
    arguments = deployment()
    pending = start_call(calls, gateway_url, "create_live_algorithm", arguments)
    approval = held_approval(gateway_url, pending, arguments["model"]["nodeId"])
    assert admin_api(gateway_url, "POST", f"/approvals/{approval['id']}/approve")[0] == 200
    assert pending.result(timeout=CALL_SECONDS)["error"] is False
    assert any(BROKERAGE_PASSWORD in r["body"] for r in live_creations(docker, api_double))
    for service in ("gateway", "gateway-relay", "qc-mcp", "egress-proxy"):
        logs = docker.run("docker logs %s", docker.container_id(project, service))
        assert BROKERAGE_PASSWORD not in logs.stdout + logs.stderr, service
