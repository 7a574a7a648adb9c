"""The responder (responder/app.py, lockdown.py, intake.py, repeats.py, server.py) against a
stand-in of the gateway on 127.0.0.1 (tests/responder_standin.py): every alert recorded before the
answer, lockdown asked for at once, bad input refused and recorded, repeats suppressed, an
unreachable gateway retried and reported, and no start without its token or with a bad setting.
What a repeat of a lockdown alert does: tests/test_responder_repeats.py."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from responder import server
from responder.gatewaycalls import ENGAGE_PATH
from responder.intake import safe_excerpt
from responder.repeats import MAX_TRACKED, Repeats
from servicebase.audit import AuditError, verify
from tests.responder_standin import (
    TOKEN,
    Running,
    StandInGateway,
    alert,
    make_settings,
    running_responder,
    serving_stand_in,
    wait_until,
)


@pytest.fixture
def gateway() -> Iterator[StandInGateway]:
    with serving_stand_in() as stand_in:
        yield stand_in


@pytest.fixture
def running(tmp_path: Path, gateway: StandInGateway) -> Iterator[Running]:
    with running_responder(tmp_path, gateway) as started:
        yield started


def test_critical_qcstack_alert_is_recorded_then_engages_lockdown_with_the_token(
    running: Running, gateway: StandInGateway
) -> None:
    answer = running.post(alert())
    assert answer.status_code == 200 and answer.json()["action"] == "lockdown"
    entry = running.entries()[answer.json()["seq"] - 1]  # on disk by the time of the answer
    assert entry["event"] == "falco-alert" and entry["action"] == "lockdown"
    assert (entry["rule"], entry["priority"], entry["container"]) == (
        "qcstack unexpected process",
        "Critical",
        "qcstack-qc-mcp-1",
    )
    assert wait_until(lambda: running.caller.status().engaged == 1)
    (call,) = gateway.requests
    assert call["path"] == ENGAGE_PATH
    assert call["headers"]["Authorization"] == "Bearer " + TOKEN.decode()
    assert call["headers"]["Host"] == "localhost"  # the gateway's admin hosts are loopback names
    assert "qcstack unexpected process" in call["body"]["reason"]
    assert running.entries()[-1]["event"] == "lockdown-call"
    assert running.entries()[-1]["outcome"] == "engaged"
    assert verify(running.settings.audit_path).ok


@pytest.mark.parametrize(
    ("priority", "tags"),
    [("Warning", ("qcstack",)), ("Error", ("qcstack",)), ("Emergency", ("container",))],
)
def test_alert_below_the_threshold_or_of_another_ruleset_is_recorded_only(
    running: Running, gateway: StandInGateway, priority: str, tags: tuple[str, ...]
) -> None:
    answer = running.post(alert(priority, tags))
    assert answer.json()["action"] == "recorded"
    time.sleep(0.1)
    assert gateway.requests == []


def test_threshold_is_a_setting(tmp_path: Path, gateway: StandInGateway) -> None:
    started = Running(make_settings(tmp_path, gateway.url, lockdown_priority="warning"))
    try:
        assert started.post(alert("Warning")).json()["action"] == "lockdown"
    finally:
        started.caller.stop()


def test_a_repeat_within_the_window_is_recorded_as_suppressed_with_no_call_of_its_own(
    running: Running, gateway: StandInGateway
) -> None:
    assert running.post(alert()).json()["action"] == "lockdown"
    assert running.post(alert()).json()["action"] == "suppressed"
    assert running.post(alert(container="other")).json()["action"] == "lockdown"
    assert wait_until(lambda: running.caller.status().engaged >= 1 and len(gateway.requests) >= 1)
    time.sleep(0.1)
    actions = [e["action"] for e in running.entries() if e["event"] == "falco-alert"]
    assert actions == ["lockdown", "suppressed", "lockdown"]
    assert len(gateway.requests) <= 2  # alerts that come while a call is out share it


def test_repeats_pass_once_a_window_and_stay_bounded() -> None:
    now = [0.0]
    repeats = Repeats(60.0, clock=lambda: now[0])
    assert not repeats.is_repeat("r", "c")
    now[0] = 59.0
    assert repeats.is_repeat("r", "c")
    now[0] = 60.0
    assert not repeats.is_repeat("r", "c")
    for n in range(MAX_TRACKED + 10):
        repeats.is_repeat("r", f"c{n}")
    assert len(repeats._passed) <= MAX_TRACKED


BAD = [
    (b"{not json", "application/json", 400),
    (json.dumps(alert()).encode(), "text/plain", 415),
    (b'"just a string"', "application/json", 422),
    (b'{"priority": "Critical"}', "application/json", 422),
    (b'{"rule": "r", "priority": "loud"}', "application/json", 422),
    (b"x" * 5000, "application/json", 413),
]


@pytest.mark.parametrize(("body", "content_type", "status"), BAD)
def test_bad_input_gets_a_clear_4xx_and_is_recorded(
    tmp_path: Path, gateway: StandInGateway, body: bytes, content_type: str, status: int
) -> None:
    started = Running(make_settings(tmp_path, gateway.url, max_body_bytes=4096))
    try:
        answer = started.client.post(
            "/alerts", content=body, headers={"content-type": content_type}
        )
        assert answer.status_code == status and answer.json()["error"]
        (entry,) = started.entries()
        assert entry["event"] == "falco-alert-rejected" and entry["status"] == status
        assert entry["bytes"] == len(body) and entry["reason"] == answer.json()["error"]
        assert entry["sha256"] == hashlib.sha256(body[: entry["sha256_bytes"]]).hexdigest()
        assert gateway.requests == []
    finally:
        started.caller.stop()


def test_excerpt_of_a_rejected_body_is_short_printable_ascii() -> None:
    excerpt = safe_excerpt(b"\x1b[2J\r\nforged line\x00" + "é".encode() + b"y" * 1000)
    assert excerpt.startswith("?[2J??forged line??")
    assert len(excerpt) == 160 and excerpt.isascii() and excerpt.isprintable()


def test_unreachable_gateway_is_retried_recorded_and_reported_then_given_up(
    tmp_path: Path,
) -> None:
    started = Running(make_settings(tmp_path, "http://127.0.0.1:9"))
    try:
        assert started.post(alert()).json()["action"] == "lockdown"
        assert wait_until(lambda: started.caller.status().gave_up)
        calls = [e for e in started.entries() if e["event"] == "lockdown-call"]
        assert [c["outcome"] for c in calls] == ["failed", "failed", "failed", "gave-up"]
        assert all(c["error"] for c in calls[:3])
        health = started.client.get("/healthz")
        assert health.status_code == 503 and health.json()["lockdown"]["gave_up"] is True
    finally:
        started.caller.stop()


def test_a_gateway_that_fails_at_first_is_retried_until_it_engages(
    running: Running, gateway: StandInGateway
) -> None:
    gateway.statuses.extend([503, 500])
    running.post(alert())
    assert wait_until(lambda: running.caller.status().engaged == 1)
    outcomes = [e["outcome"] for e in running.entries() if e["event"] == "lockdown-call"]
    assert outcomes == ["failed", "failed", "engaged"]
    assert running.client.get("/healthz").json()["status"] == "ok"


def test_healthy_responder_reports_ok(running: Running) -> None:
    answer = running.client.get("/healthz")
    assert answer.status_code == 200 and answer.json()["status"] == "ok"


def test_audit_log_that_cannot_be_written_still_engages_lockdown(
    running: Running, gateway: StandInGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full_disk(event: Any) -> dict[str, Any]:
        raise AuditError("cannot write the audit log: No space left on device")

    monkeypatch.setattr(running.audit, "append", full_disk)
    answer = running.post(alert())
    assert answer.status_code == 503 and answer.json()["action"] == "lockdown"
    assert wait_until(lambda: len(gateway.requests) == 1)


@pytest.mark.parametrize(
    ("environment", "named"),
    [
        ({"QCSTACK_RESPONDER_LOCKDOWN_PRIORITY": "severe"}, "QCSTACK_RESPONDER_LOCKDOWN_PRIORITY"),
        ({"QCSTACK_RESPONDER_GATEWAY_URL": "gateway"}, "QCSTACK_RESPONDER_GATEWAY_URL"),
        ({"QCSTACK_RESPONDER_TOKEN_FILE": "/nonexistent/token"}, "/nonexistent/token"),
    ],
)
def test_start_fails_closed_naming_what_to_fix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, environment: dict[str, str], named: str
) -> None:
    monkeypatch.setenv("QCSTACK_RESPONDER_STATE_DIR", str(tmp_path))
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as stopped:
        server.main()
    assert named in str(stopped.value)


def test_start_refuses_an_empty_token_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "token").write_text("\n")
    monkeypatch.setenv("QCSTACK_RESPONDER_TOKEN_FILE", str(tmp_path / "token"))
    monkeypatch.setenv("QCSTACK_RESPONDER_STATE_DIR", str(tmp_path))
    with pytest.raises(SystemExit, match="empty"):
        server.main()


def test_a_refusal_never_echoes_a_long_input_back(running: Running) -> None:
    answer = running.post({"rule": "r", "priority": "LOUD" * 10_000})
    assert answer.status_code == 422
    (entry,) = running.entries()
    for reason in (answer.json()["error"], entry["reason"]):
        assert "priority" in reason and len(reason) <= 500 and "LOUD" * 20 not in reason
