"""RUN-05: the pure parts of the seccomp record/verify workload: the record stack's gateway
settings, what it expects of the gateway's answers, the requests it sends the admin side, and
the alerts it sends the Falco responder."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
import yaml
from starlette.requests import Request

from gateway.admin.guard import MAX_BODY_BYTES
from gateway.admin.pages import detail_page, login_page
from gateway.approvals import Approval, ApprovalState
from gateway.lockdown import LockdownState
from gateway.policy import Profile, listed
from gateway.settings import GatewaySettings
from gateway.tools import TOOL_KINDS
from responder.alert import FalcoAlert
from responder.app import Responder
from responder.intake import Rejection, read_alert
from responder.repeats import Repeats
from responder.settings import ResponderSettings
from stack.seccomp import admin, alerts
from stack.seccomp.drive import check_gateway_report
from stack.seccomp.stage import RATE_LIMITED_TOOL, RECORD_GATEWAY_ENVIRONMENT
from stack.seccomp.workload import PROBES, SOURCES

REPO = Path(__file__).resolve().parents[1]
REFUSAL = "qcstack gateway: "


def test_record_stack_runs_the_gateway_live_with_time_for_the_admin_side(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in RECORD_GATEWAY_ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    settings = GatewaySettings()
    assert settings.profile is Profile.LIVE
    assert settings.approval_wait_seconds >= 60
    assert settings.limiter().per_tool[RATE_LIMITED_TOOL].calls == 1


def test_record_override_sets_every_gateway_variable_the_test_stack_sets() -> None:
    """The run's override wins over compose/test.yaml only for the keys it names: none of the
    test suites' gateway settings (their rate limit, their approval wait) may reach the record
    stack unnoticed."""
    test_stack = yaml.safe_load((REPO / "compose" / "test.yaml").read_text(encoding="utf-8"))
    assert set(test_stack["services"]["gateway"]["environment"]) <= set(RECORD_GATEWAY_ENVIRONMENT)


def report(**changes: Any) -> dict[str, Any]:
    """A gateway client's report as the live record stack answers it, open (not locked)."""
    calls = {
        "read_mcp_server_version": ["ok", "0.0.0-dev"],
        "read_account": ["ok", "{}"],
        "no_such_tool": ["error", REFUSAL + "tool 'no_such_tool' is not classified"],
        "create_live_algorithm": [
            "error",
            REFUSAL + "model.brokerage carries 'ib-password': brokerage settings come from the "
            "gateway's store; send only `id` and `qcstack-configuration`",
        ],
    }
    calls.update(changes)
    limited = REFUSAL + f"rate limit of {RATE_LIMITED_TOOL} reached (1 calls per 3600s)"
    tools = sorted(tool for tool in TOOL_KINDS if listed(tool, Profile.LIVE))
    return {
        "refusals": {
            "no token": [401, ""],
            "wrong token": [401, ""],
            "healthz": [200, '{"ok": true, "lockdown": false}'],
        },
        "first": {
            "tools": tools,
            "calls": [[name, status, text] for name, (status, text) in calls.items()]
            + [
                [RATE_LIMITED_TOOL, "error", "hub.docker.com"],
                [RATE_LIMITED_TOOL, "error", limited],
            ],
        },
    }


def test_gateway_report_of_the_live_record_stack_passes() -> None:
    failures, profiles = check_gateway_report(report(), upstream_up=True, lockdown=False)
    assert failures == []
    assert "live" in profiles


def test_gateway_report_fails_when_the_rate_limit_does_not_refuse() -> None:
    answer = report()
    answer["first"]["calls"][-1] = [RATE_LIMITED_TOOL, "error", "hub.docker.com"]
    failures, _ = check_gateway_report(answer, upstream_up=True, lockdown=False)
    assert any(RATE_LIMITED_TOOL in failure for failure in failures)


def test_gateway_report_fails_when_a_credentialed_deployment_is_not_refused_for_it() -> None:
    held = ["error", REFUSAL + "not run: approval x got no decision within 120s"]
    failures, _ = check_gateway_report(
        report(create_live_algorithm=held), upstream_up=True, lockdown=False
    )
    assert any("create_live_algorithm" in failure for failure in failures)


def test_pages_read_the_csrf_token_of_the_login_form_and_of_a_held_call() -> None:
    pages = admin.Pages()
    login = admin.Answer(200, login_page("login-token-1"))
    assert pages.csrf(login) == "login-token-1"
    approval = Approval(
        "abc",
        "d",
        "create_live_algorithm",
        {"model": {"brokerage": {"id": admin.IB}}},
        ApprovalState.PENDING,
        0.0,
        1.0,
    )
    page = detail_page("test-admin", "session-token-2", approval, LockdownState(False), "")
    assert pages.csrf(admin.Answer(200, page)) == "session-token-2"


def test_raw_requests_name_the_published_port_unless_told_otherwise() -> None:
    request = admin.http_request("GET", "/admin/api/lockdown", {"Authorization": "x"})
    head = request.decode().split("\r\n")
    assert head[:2] == ["GET /admin/api/lockdown HTTP/1.1", f"Host: {admin.HOST}:18090"]
    assert "Content-Length: 0" in head
    other = admin.http_request("GET", "/", {}, host="qcrec-rebind.invalid").decode()
    assert "Host: qcrec-rebind.invalid\r\n" in other


def test_chunked_body_frames_every_byte() -> None:
    body = bytes(range(256)) * 700
    framed = admin.chunked(body, size=1000)
    decoded, rest = b"", framed
    while True:
        size_line, rest = rest.split(b"\r\n", 1)
        size = int(size_line, 16)
        if size == 0:
            assert rest == b"\r\n"
            break
        decoded, rest = decoded + rest[:size], rest[size + 2 :]
    assert decoded == body


def test_oversized_requests_are_over_the_limits_they_test() -> None:
    limit = GatewaySettings.model_fields["max_request_bytes"].default
    by_what = {refused.what: refused for refused in admin.refused_requests(limit)}
    for what, over in (
        ("MCP, a stated length over the limit", limit),
        ("MCP, chunked past the limit", limit),
        ("admin API, a body over 16 KiB", MAX_BODY_BYTES),
    ):
        _, _, body = by_what[what].request.partition(b"\r\n\r\n")
        assert len(body) > over, what
    assert all(refused.status >= 400 for refused in by_what.values())


@pytest.mark.parametrize(
    "name", ["gateway_client", "gateway_live", "gateway_admin", "mcp_client", "deny_check"]
)
def test_workload_scripts_compile(name: str) -> None:
    compile((SOURCES / f"{name}.py").read_text(encoding="utf-8"), name, "exec")


def test_probes_compile() -> None:
    for name in PROBES:
        compile((SOURCES / "probes" / f"{name}.py").read_text(encoding="utf-8"), name, "exec")


def action_of(alert: alerts.Alert, repeats: Repeats) -> str:
    """What the responder's own rule (Responder.action_for) does with the alert."""
    responder = cast(Responder, SimpleNamespace(settings=ResponderSettings(), repeats=repeats))
    return Responder.action_for(responder, FalcoAlert.model_validate_json(alerts.Alert.body(alert)))


def test_workload_alerts_get_the_action_the_workload_expects_in_its_order() -> None:
    # one responder process from the first alert to the restart, a new one after it
    repeats = Repeats(ResponderSettings().suppress_seconds)
    sent = [
        alerts.WARNING,
        alerts.CRITICAL,
        alerts.REPEATED,
        alerts.UNTAGGED,
        alerts.COLLECTOR_DOWN,
        alerts.GATEWAY_DOWN,
    ]
    assert [action_of(alert, repeats) for alert in sent] == [alert.action for alert in sent]
    restarted = Repeats(ResponderSettings().suppress_seconds)
    assert action_of(alerts.AFTER_RESTART, restarted) == alerts.AFTER_RESTART.action
    assert {alert.action for alert in sent} == {"lockdown", "recorded", "suppressed"}


def request_from(raw: bytes) -> Request:
    """A Starlette request from the bytes the workload sends (Content-Length or chunked)."""
    head, _, body = raw.partition(b"\r\n\r\n")
    request_line, *lines = head.decode("latin-1").split("\r\n")
    method, path, _ = request_line.split(" ")
    headers = [
        tuple(part.strip().lower().encode() for part in line.split(":", 1)) for line in lines
    ]
    if (b"transfer-encoding", b"chunked") in headers:
        decoded, rest = b"", body
        while (size := int(rest.split(b"\r\n", 1)[0], 16)) > 0:
            chunk_start = rest.index(b"\r\n") + 2
            decoded += rest[chunk_start : chunk_start + size]
            rest = rest[chunk_start + size + 2 :]
        body = decoded
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {"type": "http", "method": method, "path": path, "headers": headers}
    return Request(scope, receive)


@pytest.mark.parametrize(
    "what", [what for what, _, _ in alerts.refused(ResponderSettings().max_body_bytes)]
)
def test_refused_alert_bodies_get_the_status_the_workload_expects(what: str) -> None:
    limit = ResponderSettings().max_body_bytes
    (raw, status), *_ = [(r, s) for w, r, s in alerts.refused(limit) if w == what]
    assert f"Host: {alerts.HOST}\r\n" in raw.decode("latin-1")
    received = asyncio.run(read_alert(request_from(raw), limit))
    assert isinstance(received, Rejection) and received.status == status, received
