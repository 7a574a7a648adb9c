"""The approval pages and admin API in process (the gateway's whole app, httpx's ASGI transport):
who gets in, what they are shown, what they may change, and what the browser is told."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import httpx2
import pytest
from fastmcp import Client, FastMCP

from gateway.admin.statistics import BacktestStatistics, ListBacktestsStatistics, NoStatistics
from gateway.admins import AdminAccess, Admins
from gateway.approvals import Approval, ApprovalState
from gateway.calls import Gate
from gateway.server import build_app, build_gate, upstream_tool_caller
from gateway.settings import GatewaySettings

pytestmark = pytest.mark.anyio
ORIGIN = "http://127.0.0.1:18060"
BEARER = "mcp-clients-bearer-token-0123456789"
ALICE = ("alice", "alice-password-0123456789")
BOB = ("bob", "bob-password-0123456789abc")
RESPONDER = "responder-token-0123456789abcdef"
BROKERAGE_PASSWORD = "canary-ib-password-77c1d2"  # noqa: S105 -- searched for on every page
DEPLOY = {
    "model": {
        "versionId": "-1",
        "projectId": 23456789,
        "compileId": "5d1f2cba3a0ec7407c566614300502b5-173e0419674daf4144ce7c9931155ca8",
        "nodeId": "LN-c54129e1b4f667613d3f34542b787771",
        "brokerage": {
            "id": "InteractiveBrokersBrokerage",
            "ib-user-name": "trader",
            "ib-account": "DU1234567",
            "ib-password": BROKERAGE_PASSWORD,
            "ib-weekly-restart-utc-time": "22:00:00",
        },
    }
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FixedStatistics:
    def __init__(self, answer: BacktestStatistics | Exception | None) -> None:
        self.answer = answer

    async def latest_backtest(self, project_id: int) -> BacktestStatistics | None:
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


@pytest.fixture
def settings(tmp_path: Path) -> GatewaySettings:
    return GatewaySettings(upstream_url="http://127.0.0.1:9/mcp", state_dir=tmp_path / "state")


@pytest.fixture
def gate(settings: GatewaySettings) -> Gate:
    return build_gate(settings)


def make_client(
    settings: GatewaySettings, gate: Gate, statistics: Any = None
) -> httpx2.AsyncClient:
    access = AdminAccess(Admins.of([ALICE, BOB]), RESPONDER.encode())
    app = build_app(settings, gate, BEARER.encode(), access, statistics)
    return httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url=ORIGIN)


@pytest.fixture
async def client(settings: GatewaySettings, gate: Gate) -> AsyncIterator[httpx2.AsyncClient]:
    async with make_client(settings, gate) as connected:
        yield connected


SAME_ORIGIN = {"origin": ORIGIN, "sec-fetch-site": "same-origin"}


def csrf_in(page: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match, page
    return match[1]


async def sign_in(client: httpx2.AsyncClient, who: tuple[str, str] = ALICE) -> str:
    """Signs in through the login form like a browser; returns the session's CSRF token."""
    form = await client.get("/admin/login")
    answer = await client.post(
        "/admin/login",
        data={"name": who[0], "password": who[1], "csrf": csrf_in(form.text)},
        headers=SAME_ORIGIN,
    )
    assert answer.status_code == 303, answer.text
    return csrf_in((await client.get("/admin/")).text)


def hold(gate: Gate, arguments: Mapping[str, Any] = DEPLOY) -> Approval:
    return gate.approvals.hold("create_live_algorithm", arguments)


def basic(name: str, password: str) -> dict[str, str]:
    encoded = base64.b64encode(f"{name}:{password}".encode()).decode()
    return {"authorization": f"Basic {encoded}"}


def audit_events(gate: Gate) -> list[dict[str, Any]]:
    return [json.loads(line) for line in gate.audit.path.read_text().splitlines()]


# ---- who gets in --------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/admin/", "/admin/approvals/abc"])
async def test_approval_pages_send_a_visitor_without_a_login_to_sign_in(
    client: httpx2.AsyncClient, path: str
) -> None:
    answer = await client.get(path)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/admin/login"


@pytest.mark.parametrize(
    "path", ["/admin/", "/admin/api/approvals", "/admin/api/lockdown"], ids=["page", "api", "lock"]
)
async def test_mcp_bearer_token_opens_no_admin_page_or_api(
    client: httpx2.AsyncClient, path: str
) -> None:
    # The agent holds the bearer token: it must not approve its own calls.
    answer = await client.get(path, headers={"authorization": f"Bearer {BEARER}"})
    assert answer.status_code in (303, 401)
    assert answer.status_code != 200


async def test_mcp_bearer_token_cannot_engage_or_lift_lockdown(
    client: httpx2.AsyncClient, gate: Gate
) -> None:
    for action in ("engage", "lift"):
        answer = await client.post(
            f"/admin/api/lockdown/{action}",
            json={"reason": "agent"},
            headers={"authorization": f"Bearer {BEARER}"},
        )
        assert answer.status_code == 401
    assert not gate.lockdown.state().locked


@pytest.mark.parametrize(
    "headers",
    [
        basic(*ALICE),
        {"authorization": f"Bearer {ALICE[1]}"},
        {"authorization": f"Bearer {RESPONDER}"},
    ],
    ids=["admin-basic", "admin-password-as-bearer", "responder-token"],
)
async def test_admin_and_responder_credentials_open_no_mcp_endpoint(
    client: httpx2.AsyncClient, headers: dict[str, str]
) -> None:
    answer = await client.post("/mcp", json={}, headers=headers)
    assert answer.status_code == 401


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/admin/api/approvals"),
        ("GET", "/admin/api/lockdown"),
        ("POST", "/admin/api/lockdown/lift"),
        ("POST", "/admin/api/approvals/{id}/approve"),
        ("POST", "/admin/api/approvals/{id}/deny"),
    ],
)
async def test_responder_token_does_nothing_but_engage_lockdown(
    client: httpx2.AsyncClient, gate: Gate, method: str, path: str
) -> None:
    held = hold(gate)
    gate.lockdown.engage("test", "already engaged")
    answer = await client.request(
        method,
        path.format(id=held.id),
        json={} if method == "POST" else None,
        headers={"authorization": f"Bearer {RESPONDER}"},
    )
    assert answer.status_code == 403
    assert "can only engage lockdown" in answer.json()["error"]
    assert gate.lockdown.state().locked
    assert gate.approvals.get(held.id).state is ApprovalState.PENDING


async def test_responder_token_engages_lockdown_and_it_is_audited(
    client: httpx2.AsyncClient, gate: Gate
) -> None:
    answer = await client.post(
        "/admin/api/lockdown/engage",
        json={"reason": "falco: shell in qc-mcp"},
        headers={"authorization": f"Bearer {RESPONDER}"},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["locked"] is True
    assert gate.lockdown.state().by == "responder"
    assert audit_events(gate)[-1] == {
        **audit_events(gate)[-1],
        "event": "lockdown-engaged",
        "by": "responder",
        "reason": "falco: shell in qc-mcp",
    }


@pytest.mark.parametrize(
    "headers",
    [
        {},
        basic("alice", "wrong-password-0123"),
        basic("mallory", ALICE[1]),
        {"authorization": "Basic !!"},
    ],
    ids=["none", "wrong-password", "unknown-admin", "garbled"],
)
async def test_lifting_lockdown_needs_an_admin_credential(
    client: httpx2.AsyncClient, gate: Gate, headers: dict[str, str]
) -> None:
    gate.lockdown.engage("responder", "alert")
    answer = await client.post("/admin/api/lockdown/lift", json={}, headers=headers)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith("Basic")
    assert gate.lockdown.state().locked


async def test_admin_lifts_lockdown_by_name(client: httpx2.AsyncClient, gate: Gate) -> None:
    gate.lockdown.engage("responder", "alert")
    answer = await client.post("/admin/api/lockdown/lift", json={}, headers=basic(*ALICE))
    assert answer.status_code == 200
    assert answer.json() == {**answer.json(), "locked": False, "by": "alice"}
    assert audit_events(gate)[-1]["event"] == "lockdown-lifted"


async def test_password_guessing_is_throttled(client: httpx2.AsyncClient) -> None:
    statuses = [
        (
            await client.get("/admin/api/lockdown", headers=basic("alice", f"guess-{n:012d}"))
        ).status_code
        for n in range(12)
    ]
    assert statuses[:10] == [401] * 10
    assert statuses[10:] == [429, 429]
    # Even the right password waits out the burst: a guesser cannot tell it worked.
    assert (await client.get("/admin/api/lockdown", headers=basic(*ALICE))).status_code == 429


# ---- the session cookie -------------------------------------------------------------------


async def test_login_sets_a_strict_httponly_expiring_cookie_for_admin_paths_only(
    client: httpx2.AsyncClient,
) -> None:
    form = await client.get("/admin/login")
    answer = await client.post(
        "/admin/login",
        data={"name": ALICE[0], "password": ALICE[1], "csrf": csrf_in(form.text)},
        headers=SAME_ORIGIN,
    )
    cookie = next(
        c for c in answer.headers.get_list("set-cookie") if c.startswith("qcstack_admin=")
    )
    attributes = {part.strip().split("=")[0].lower(): part for part in cookie.split(";")[1:]}
    assert "httponly" in attributes
    assert attributes["samesite"].strip().lower() == "samesite=strict"
    assert attributes["path"].strip() == "Path=/admin"
    assert attributes["max-age"].strip() == "Max-Age=1800"


async def test_wrong_password_gets_no_session(client: httpx2.AsyncClient, gate: Gate) -> None:
    form = await client.get("/admin/login")
    answer = await client.post(
        "/admin/login",
        data={"name": "alice", "password": "not-alices-password", "csrf": csrf_in(form.text)},
        headers=SAME_ORIGIN,
    )
    assert answer.status_code == 401
    assert "qcstack_admin=" not in answer.headers.get("set-cookie", "")
    assert audit_events(gate)[-1]["event"] == "admin-login-failed"
    assert (await client.get("/admin/")).status_code == 303


async def test_login_form_posted_without_its_own_cookie_is_refused(
    settings: GatewaySettings, gate: Gate
) -> None:
    # Login CSRF: another site posting its own credentials into the admin's browser.
    async with make_client(settings, gate) as other:
        token = csrf_in((await other.get("/admin/login")).text)
    async with make_client(settings, gate) as victim:
        answer = await victim.post(
            "/admin/login",
            data={"name": ALICE[0], "password": ALICE[1], "csrf": token},
            headers=SAME_ORIGIN,
        )
    assert answer.status_code == 403


@pytest.mark.parametrize("tamper", ["signature", "expiry", "session-id", "garbage"])
async def test_forged_session_cookie_is_refused(client: httpx2.AsyncClient, tamper: str) -> None:
    await sign_in(client)
    real = client.cookies["qcstack_admin"]
    session_id, expires, signature = real.split(".")
    forged = {
        "signature": f"{session_id}.{expires}.{signature[:-2]}AA",
        "expiry": f"{session_id}.{int(expires) + 86400}.{signature}",
        "session-id": f"{session_id[:-2]}xx.{expires}.{signature}",
        "garbage": "admin=alice",
    }[tamper]
    client.cookies.clear()
    client.cookies.set("qcstack_admin", forged, path="/admin")
    assert (await client.get("/admin/")).status_code == 303


async def test_session_ends_at_logout_even_if_the_cookie_is_kept(
    client: httpx2.AsyncClient,
) -> None:
    csrf = await sign_in(client)
    kept = client.cookies["qcstack_admin"]
    answer = await client.post("/admin/logout", data={"csrf": csrf}, headers=SAME_ORIGIN)
    assert answer.status_code == 303
    client.cookies.set("qcstack_admin", kept, path="/admin")
    assert (await client.get("/admin/")).status_code == 303


async def test_session_expires(settings: GatewaySettings, gate: Gate) -> None:
    short = settings.model_copy(update={"admin_session_seconds": 0.001})
    async with make_client(short, gate) as client:
        form = await client.get("/admin/login")
        await client.post(
            "/admin/login",
            data={"name": ALICE[0], "password": ALICE[1], "csrf": csrf_in(form.text)},
            headers=SAME_ORIGIN,
        )
        assert (await client.get("/admin/")).status_code == 303


async def test_api_does_not_take_the_page_session(client: httpx2.AsyncClient) -> None:
    await sign_in(client)
    assert (await client.get("/admin/api/approvals")).status_code == 401


# ---- what may change, and from where ------------------------------------------------------


@pytest.mark.parametrize("token", ["", "wrong", "other-admins"])
async def test_decision_form_without_the_sessions_csrf_token_is_refused(
    settings: GatewaySettings, gate: Gate, client: httpx2.AsyncClient, token: str
) -> None:
    held = hold(gate)
    await sign_in(client)
    if token == "other-admins":  # noqa: S105 -- a test case name
        async with make_client(settings, gate) as bob:
            token = await sign_in(bob, BOB)
    answer = await client.post(
        f"/admin/approvals/{held.id}/approve", data={"csrf": token}, headers=SAME_ORIGIN
    )
    assert answer.status_code == 403
    assert gate.approvals.get(held.id).state is ApprovalState.PENDING


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": "http://evil.example"},
        {"origin": "null"},
        {"origin": "http://127.0.0.1:18061"},
        {"sec-fetch-site": "cross-site"},
        {"sec-fetch-site": "same-site"},
        {"origin": ORIGIN, "sec-fetch-site": "cross-site"},
    ],
    ids=["other-site", "null-origin", "other-port", "cross-site", "same-site", "mixed"],
)
async def test_cross_origin_post_is_refused(
    client: httpx2.AsyncClient, gate: Gate, headers: dict[str, str]
) -> None:
    held = hold(gate)
    csrf = await sign_in(client)
    page = await client.post(
        f"/admin/approvals/{held.id}/approve", data={"csrf": csrf}, headers=headers
    )
    api = await client.post(
        f"/admin/api/approvals/{held.id}/approve", json={}, headers={**headers, **basic(*ALICE)}
    )
    assert (page.status_code, api.status_code) == (403, 403)
    assert "cross-origin" in page.text
    assert gate.approvals.get(held.id).state is ApprovalState.PENDING


async def test_api_refuses_a_form_encoded_post(client: httpx2.AsyncClient, gate: Gate) -> None:
    # A cross-site HTML form can send form encoding, never application/json.
    held = hold(gate)
    answer = await client.post(
        f"/admin/api/approvals/{held.id}/approve", data={"x": "1"}, headers=basic(*ALICE)
    )
    assert answer.status_code == 415
    assert gate.approvals.get(held.id).state is ApprovalState.PENDING


@pytest.mark.parametrize("host", ["evil.example:18060", "qcstack.attacker.test", "10.0.0.5:18060"])
async def test_admin_pages_refuse_a_foreign_host_header(
    client: httpx2.AsyncClient, host: str
) -> None:
    # DNS rebinding: a page on another name that resolves to 127.0.0.1.
    answer = await client.get("/admin/login", headers={"host": host})
    assert answer.status_code == 421


async def test_oversized_admin_post_is_refused(client: httpx2.AsyncClient) -> None:
    answer = await client.post(
        "/admin/login", content=b"x" * 20000, headers={"content-type": "text/plain"}
    )
    assert answer.status_code == 413


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/admin/login"),
        ("GET", "/admin/"),
        ("GET", "/admin/api/lockdown"),
        ("POST", "/admin/login"),
    ],
)
async def test_every_admin_answer_carries_strict_security_headers(
    client: httpx2.AsyncClient, method: str, path: str
) -> None:
    answer = await client.request(method, path, headers={"origin": "http://evil.example"})
    csp = answer.headers["content-security-policy"]
    assert csp.startswith("default-src 'none'")
    assert "frame-ancestors 'none'" in csp and "script-src" not in csp
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["referrer-policy"] == "same-origin"


# ---- what a person is shown ---------------------------------------------------------------


async def test_held_call_list_and_detail_show_the_deployment_and_no_brokerage_secret(
    client: httpx2.AsyncClient, gate: Gate
) -> None:
    held = hold(gate)
    await sign_in(client)
    listing = (await client.get("/admin/")).text
    detail = (await client.get(f"/admin/approvals/{held.id}")).text
    for shown in (listing, detail):
        assert held.id in shown and "create_live_algorithm" in shown
        assert "23456789" in shown and "InteractiveBrokersBrokerage" in shown
        assert "LN-c54129e1b4f667613d3f34542b787771" in shown
        assert BROKERAGE_PASSWORD not in shown
    assert "5d1f2cba3a0ec7407c566614300502b5-173e0419674daf4144ce7c9931155ca8" in detail
    assert "[redacted]" in detail
    api = await client.get(f"/admin/api/approvals/{held.id}", headers=basic(*ALICE))
    assert api.json()["summary"]["Brokerage"] == "InteractiveBrokersBrokerage"
    assert BROKERAGE_PASSWORD not in api.text


async def test_arguments_cannot_inject_markup_into_the_page(
    client: httpx2.AsyncClient, gate: Gate
) -> None:
    injected = {"model": {"projectId": 1, "nodeId": '<script>alert(1)</script><img src="x">'}}
    held = hold(gate, injected)
    await sign_in(client)
    for path in ("/admin/", f"/admin/approvals/{held.id}"):
        page = (await client.get(path)).text
        assert "<script>" not in page and "<img" not in page
        assert "&lt;script&gt;" in page


async def test_approving_from_the_page_records_the_admin_and_audits_first(
    client: httpx2.AsyncClient, gate: Gate
) -> None:
    held = hold(gate)
    csrf = await sign_in(client, BOB)
    answer = await client.post(
        f"/admin/approvals/{held.id}/approve", data={"csrf": csrf}, headers=SAME_ORIGIN
    )
    assert answer.status_code == 303
    decided = gate.approvals.get(held.id)
    assert (decided.state, decided.decided_by) == (ApprovalState.APPROVED, "bob")
    assert audit_events(gate)[-1] == {
        **audit_events(gate)[-1],
        "event": "admin-approve",
        "approval": held.id,
        "by": "bob",
    }
    page = (await client.get(f"/admin/approvals/{held.id}")).text
    assert "approved by bob" in page and "Approve</button>" not in page


async def test_denying_from_the_page_records_the_admin(
    client: httpx2.AsyncClient, gate: Gate
) -> None:
    held = hold(gate)
    csrf = await sign_in(client)
    await client.post(f"/admin/approvals/{held.id}/deny", data={"csrf": csrf}, headers=SAME_ORIGIN)
    decided = gate.approvals.get(held.id)
    assert (decided.state, decided.decided_by) == (ApprovalState.DENIED, "alice")


@pytest.mark.parametrize(
    ("verdict", "state"), [("approve", ApprovalState.APPROVED), ("deny", ApprovalState.DENIED)]
)
async def test_api_decision_records_the_admin_and_cannot_be_made_twice(
    client: httpx2.AsyncClient, gate: Gate, verdict: str, state: ApprovalState
) -> None:
    held = hold(gate)
    path = f"/admin/api/approvals/{held.id}/{verdict}"
    first = await client.post(path, json={}, headers=basic(*ALICE))
    assert first.status_code == 200, first.text
    assert (first.json()["state"], first.json()["decided_by"]) == (str(state), "alice")
    again = await client.post(path, json={}, headers=basic(*BOB))
    assert again.status_code == 409
    assert gate.approvals.get(held.id).decided_by == "alice"


async def test_nothing_is_approved_during_lockdown(client: httpx2.AsyncClient, gate: Gate) -> None:
    held = hold(gate)
    gate.lockdown.engage("responder", "alert")
    answer = await client.post(
        f"/admin/api/approvals/{held.id}/approve", json={}, headers=basic(*ALICE)
    )
    assert answer.status_code == 409 and "lockdown" in answer.json()["error"]
    assert gate.approvals.get(held.id).state is ApprovalState.PENDING


async def test_api_lists_pending_approvals_redacted(client: httpx2.AsyncClient, gate: Gate) -> None:
    first, second = hold(gate), hold(gate, {"model": {"projectId": 2}})
    gate.approvals.deny(second.id, "alice")
    pending = await client.get("/admin/api/approvals?state=pending", headers=basic(*ALICE))
    everything = await client.get("/admin/api/approvals", headers=basic(*ALICE))
    assert [a["id"] for a in pending.json()] == [first.id]
    assert {a["id"] for a in everything.json()} == {first.id, second.id}
    assert BROKERAGE_PASSWORD not in everything.text


async def test_unknown_or_malformed_approval_id_is_not_found(client: httpx2.AsyncClient) -> None:
    for approval_id in ("nosuchid", "..%2f..%2fetc"):
        answer = await client.get(f"/admin/api/approvals/{approval_id}", headers=basic(*ALICE))
        assert answer.status_code == 404


# ---- the latest backtest beside the held call ---------------------------------------------

STATISTICS = BacktestStatistics(
    "26c7bb06b8487cff1c7b3c44652b30f1",
    "momentum v3",
    "2026-11-20 10:00:00",
    {"sharpeRatio": "1.42", "drawdown": "0.18"},
)


@pytest.mark.parametrize(
    ("provider", "shown"),
    [
        (FixedStatistics(STATISTICS), ["momentum v3", "sharpeRatio", "1.42", "drawdown"]),
        (FixedStatistics(None), ["has no backtest"]),
        (FixedStatistics(RuntimeError("upstream down")), ["Not available: upstream down"]),
        (NoStatistics(), ["Not available: no backtest statistics provider is configured"]),
    ],
    ids=["found", "none", "failing", "no-provider"],
)
async def test_detail_page_shows_the_latest_backtest_when_it_can(
    settings: GatewaySettings, gate: Gate, provider: Any, shown: list[str]
) -> None:
    held = hold(gate)
    async with make_client(settings, gate, provider) as client:
        await sign_in(client)
        page = await client.get(f"/admin/approvals/{held.id}")
    assert page.status_code == 200
    for text in shown:
        assert text in page.text


async def test_list_backtests_statistics_picks_the_newest_backtest() -> None:
    calls: list[tuple[str, dict[str, Any]]] = []

    async def call_tool(name: str, arguments: dict[str, Any]) -> Mapping[str, Any]:
        calls.append((name, arguments))
        return {
            "success": True,
            "backtests": [
                {"backtestId": "old", "name": "a", "created": "2026-01-01 00:00:00", "alpha": 1},
                {
                    "backtestId": "new",
                    "name": "b",
                    "created": "2026-02-01 00:00:00",
                    "sharpeRatio": 2.5,
                    "netProfit": None,
                },
            ],
        }

    found = await ListBacktestsStatistics(call_tool).latest_backtest(7)
    assert calls == [("list_backtests", {"model": {"projectId": 7, "includeStatistics": True}})]
    assert found is not None
    assert (found.backtest_id, dict(found.statistics)) == ("new", {"sharpeRatio": "2.5"})


async def test_list_backtests_statistics_reports_a_refusal() -> None:
    async def call_tool(name: str, arguments: dict[str, Any]) -> Mapping[str, Any]:
        return {"success": False, "errors": ["Project not found"]}

    with pytest.raises(LookupError, match="Project not found"):
        await ListBacktestsStatistics(call_tool).latest_backtest(7)


async def test_default_statistics_come_from_the_upstreams_list_backtests_tool(
    tmp_path: Path,
) -> None:
    upstream = FastMCP("test-upstream")

    @upstream.tool
    def list_backtests(model: dict[str, Any]) -> dict[str, Any]:
        return {"success": True, "backtests": [
            {"backtestId": "b1", "name": f"project {model['projectId']} backtest",
             "created": "2026-11-20 10:00:00", "sharpeRatio": 1.42},
        ]}  # fmt: skip

    async def client_factory() -> Client[Any]:
        return Client(upstream)

    provider = ListBacktestsStatistics(upstream_tool_caller(client_factory))
    found = await provider.latest_backtest(23456789)
    assert found is not None
    assert (found.name, dict(found.statistics)) == (
        "project 23456789 backtest",
        {"sharpeRatio": "1.42"},
    )


async def test_statistics_from_an_unreachable_upstream_leave_the_page_working(
    client: httpx2.AsyncClient, gate: Gate
) -> None:
    held = hold(gate)
    await sign_in(client)
    page = await client.get(f"/admin/approvals/{held.id}")
    assert page.status_code == 200
    assert "Latest backtest</h2><p>Not available" in page.text


@pytest.mark.parametrize("path", ["/admin/../mcp", "/admin/..%2Fmcp", "/admin/%2e%2e/mcp"])
async def test_dot_segments_under_admin_do_not_reach_mcp_without_the_bearer_token(
    settings: GatewaySettings, gate: Gate, path: str
) -> None:
    # Sent as raw ASGI (an HTTP client would normalise the path): /admin is exempt from the
    # bearer check, so nothing under it may route to /mcp.
    access = AdminAccess(Admins.of([ALICE]), RESPONDER.encode())
    app = build_app(settings, gate, BEARER.encode(), access)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1:18060"), *basic(*ALICE).items()],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 18060),
    }
    scope["headers"] = [
        (k.encode() if isinstance(k, str) else k, v.encode() if isinstance(v, str) else v)
        for k, v in scope["headers"]
    ]
    await app(scope, receive, send)
    assert sent[0]["status"] in (404, 405)
