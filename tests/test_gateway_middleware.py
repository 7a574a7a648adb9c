"""The policy middleware in front of a test upstream, in process: listing, refusing, holding,
approving, auditing. (The real qc-mcp stands behind the gateway in infra_tests.)"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client, FastMCP
from fastmcp.server import create_proxy

from gateway.approvals import ApprovalState, ApprovalStore
from gateway.audit import AuditLog, verify
from gateway.brokerages import CONFIGURATION_KEY, BrokerageStore
from gateway.calls import Gate
from gateway.limits import Limiter, RateLimit
from gateway.lockdown import Lockdown
from gateway.middleware import PolicyMiddleware
from gateway.policy import Profile

SECRET = "canary-brokerage-password-31337"  # noqa: S105 -- a canary, searched for
pytestmark = pytest.mark.anyio
BROKERAGES = BrokerageStore(
    {"ib-main": {"id": "IB", "ib-user-name": "trader-one", "ib-password": SECRET}}
)
DEPLOY = {"model": {"projectId": 1, "brokerage": {"id": "IB", CONFIGURATION_KEY: "ib-main"}}}
DEPLOY_WITH_PASSWORD = {"model": {"projectId": 1, "brokerage": {"id": "IB", "ib-password": SECRET}}}
RECEIVED: list[dict[str, Any]] = []  # what the test upstream was called with


def upstream_with_qc_mcp_tool_names() -> FastMCP:
    """Stands in for qc-mcp's tool surface in these unit tests only: same names, trivial bodies."""
    upstream = FastMCP("test-upstream")
    for name in ("read_account", "create_backtest", "create_live_algorithm",
                 "stop_live_algorithm", "tool_from_a_newer_server"):  # fmt: skip

        def tool(model: dict[str, Any] | None = None, _name: str = name) -> dict[str, Any]:
            RECEIVED.append({"tool": _name, "model": model})
            return {"tool": _name, "model": model}

        upstream.tool(tool, name=name)
    return upstream


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def gate(tmp_path: Path) -> Gate:
    return Gate(
        profile=Profile.LIVE,
        audit=AuditLog(tmp_path / "audit.jsonl"),
        approvals=ApprovalStore(tmp_path / "approvals", ttl_seconds=60),
        lockdown=Lockdown(tmp_path / "lockdown.json"),
        approval_wait_seconds=5,
        brokerages=BROKERAGES,
    )


@pytest.fixture
async def client(gate: Gate) -> AsyncIterator[Client[Any]]:
    proxy = create_proxy(
        upstream_with_qc_mcp_tool_names(),
        name="qcstack-gateway",
        middleware=[PolicyMiddleware(gate)],
    )
    async with Client(proxy) as connected:
        yield connected


def audit_events(gate: Gate) -> list[dict[str, Any]]:
    return [json.loads(line) for line in gate.audit.path.read_text().splitlines()]


async def call(client: Client[Any], tool: str, arguments: dict[str, Any] | None = None) -> Any:
    return await client.call_tool(tool, arguments or {}, raise_on_error=False)


async def test_unknown_tool_is_neither_listed_nor_callable(client: Client[Any]) -> None:
    assert "tool_from_a_newer_server" not in {t.name for t in await client.list_tools()}
    result = await call(client, "tool_from_a_newer_server")
    assert result.is_error and "not classified" in result.content[0].text


async def test_read_passes_and_is_audited_before_and_after(client: Client[Any], gate: Gate) -> None:
    result = await call(client, "read_account")
    assert not result.is_error
    assert [e["event"] for e in audit_events(gate)] == ["allow", "completed"]
    assert verify(gate.audit.path).ok


async def test_live_deploy_waits_and_runs_once_approved(client: Client[Any], gate: Gate) -> None:
    pending = asyncio.create_task(call(client, "create_live_algorithm", DEPLOY))
    while not gate.approvals.all():
        await asyncio.sleep(0.05)
    held = gate.approvals.all()[0]
    assert not pending.done()
    gate.approvals.approve(held.id, "alice")
    result = await asyncio.wait_for(pending, 10)
    assert not result.is_error
    assert gate.approvals.get(held.id).state is ApprovalState.USED
    events = audit_events(gate)
    assert [e["event"] for e in events] == ["hold", "waiting", "approved", "completed"]
    assert events[2]["approved_by"] == "alice"


async def test_denied_deploy_returns_a_clear_error(client: Client[Any], gate: Gate) -> None:
    pending = asyncio.create_task(call(client, "create_live_algorithm", DEPLOY))
    while not gate.approvals.all():
        await asyncio.sleep(0.05)
    gate.approvals.deny(gate.approvals.all()[0].id, "bob")
    result = await asyncio.wait_for(pending, 10)
    assert result.is_error and "denied" in result.content[0].text


async def test_unanswered_approval_times_out(client: Client[Any], gate: Gate) -> None:
    object.__setattr__(gate, "approval_wait_seconds", 0.3)
    result = await call(client, "create_live_algorithm", DEPLOY)
    assert result.is_error and "no decision" in result.content[0].text
    assert gate.approvals.all()[0].state is ApprovalState.DENIED


async def test_approval_expiring_with_the_wait_is_a_timeout(tmp_path: Path, gate: Gate) -> None:
    # The store's lifetime equals the wait (as the server builds it): the approval expires at the
    # moment the wait ends, and the call must still end as a timeout, audited as one.
    object.__setattr__(gate, "approval_wait_seconds", 0.6)
    object.__setattr__(gate, "approvals", ApprovalStore(tmp_path / "short", ttl_seconds=0.3))
    proxy = create_proxy(
        upstream_with_qc_mcp_tool_names(),
        name="qcstack-gateway",
        middleware=[PolicyMiddleware(gate)],
    )
    async with Client(proxy) as short:
        result = await call(short, "create_live_algorithm", DEPLOY)
    assert result.is_error and "no decision" in result.content[0].text
    assert audit_events(gate)[-1]["event"] == "approval-timeout"


async def test_brokerage_secret_never_reaches_the_audit_log(
    client: Client[Any], gate: Gate
) -> None:
    object.__setattr__(gate, "approval_wait_seconds", 0.3)
    await call(client, "create_live_algorithm", DEPLOY)
    assert SECRET not in gate.audit.path.read_text()


async def test_agent_sending_brokerage_credentials_itself_is_refused(
    client: Client[Any], gate: Gate
) -> None:
    result = await call(client, "create_live_algorithm", DEPLOY_WITH_PASSWORD)
    assert result.is_error and "come from the gateway's store" in result.content[0].text
    assert SECRET not in result.content[0].text
    assert gate.approvals.all() == []  # refused before anyone is asked
    assert SECRET not in gate.audit.path.read_text()


@pytest.mark.parametrize(
    ("brokerage", "refusal"),
    [
        ({"id": "IB", CONFIGURATION_KEY: "someone-elses"}, "no configuration named"),
        ({"id": "Tradier", CONFIGURATION_KEY: "ib-main"}, "is for IB"),
    ],
)
async def test_deploy_naming_a_wrong_configuration_is_refused(
    client: Client[Any], brokerage: dict[str, Any], refusal: str
) -> None:
    result = await call(client, "create_live_algorithm", {"model": {"brokerage": brokerage}})
    assert result.is_error and refusal in result.content[0].text


async def test_approved_deploy_gets_the_stored_credentials_and_the_answer_is_scrubbed(
    client: Client[Any], gate: Gate
) -> None:
    RECEIVED.clear()
    pending = asyncio.create_task(call(client, "create_live_algorithm", DEPLOY))
    while not gate.approvals.all():
        await asyncio.sleep(0.05)
    gate.approvals.approve(gate.approvals.all()[0].id, "alice")
    result = await asyncio.wait_for(pending, 10)
    sent = RECEIVED[-1]["model"]["brokerage"]
    assert sent == {"id": "IB", "ib-user-name": "trader-one", "ib-password": SECRET}
    answer = json.dumps([c.model_dump() for c in result.content]) + json.dumps(
        result.structured_content
    )
    assert SECRET not in answer and "[redacted]" in answer
    assert SECRET not in gate.audit.path.read_text()


async def test_lockdown_refuses_compute_but_not_stop(client: Client[Any], gate: Gate) -> None:
    gate.lockdown.engage("test", "runaway agent")
    refused = await call(client, "create_backtest", {"model": {"projectId": 1}})
    assert refused.is_error and "lockdown" in refused.content[0].text
    assert not (await call(client, "stop_live_algorithm", {"model": {"projectId": 1}})).is_error


async def test_unreadable_lockdown_state_counts_as_locked(client: Client[Any], gate: Gate) -> None:
    gate.lockdown.path.write_text("{not json")
    result = await call(client, "create_backtest", {"model": {"projectId": 1}})
    assert result.is_error and "lockdown" in result.content[0].text


async def test_rate_limited_call_gets_a_clear_error_and_is_audited(
    client: Client[Any], gate: Gate
) -> None:
    object.__setattr__(gate, "limiter", Limiter(per_tool={"read_account": RateLimit(1, 60)}))
    assert not (await call(client, "read_account")).is_error
    refused = await call(client, "read_account")
    assert refused.is_error and "rate limit of read_account" in refused.content[0].text
    assert audit_events(gate)[-1]["event"] == "rate-limited"


async def test_unwritable_audit_log_refuses_the_call(client: Client[Any], gate: Gate) -> None:
    gate.audit.close()  # every later write fails: EBADF
    result = await call(client, "read_account")
    assert result.is_error and "audit log unavailable" in result.content[0].text


async def test_lockdown_engaged_while_a_call_is_held_stops_it_even_once_approved(
    client: Client[Any], gate: Gate
) -> None:
    pending = asyncio.create_task(call(client, "create_live_algorithm", DEPLOY))
    while not gate.approvals.all():
        await asyncio.sleep(0.05)
    gate.lockdown.engage("responder", "alert")
    gate.approvals.approve(gate.approvals.all()[0].id, "alice")
    result = await asyncio.wait_for(pending, 10)
    assert result.is_error and "lockdown" in result.content[0].text
    assert audit_events(gate)[-1]["event"] == "lockdown"
