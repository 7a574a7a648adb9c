"""DET-08, repeats (responder/app.py, lockdown.py, gatewaycalls.py) against the stand-in gateway
(tests/responder_standin.py): a repeat of a lockdown alert within suppress_seconds is recorded as
suppressed and has the gateway's lockdown state read (GET /healthz); it engages lockdown again
when the gateway is not locked or its state cannot be read, engages nothing while it is locked,
and a storm of repeats makes a bounded number of calls."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.responder_standin import (
    Running,
    StandInGateway,
    alert,
    make_settings,
    running_responder,
    serving_stand_in,
    wait_until,
)

STORM = 100
"""Repeats posted back to back in the storm test."""


@pytest.fixture
def gateway() -> Iterator[StandInGateway]:
    with serving_stand_in() as stand_in:
        yield stand_in


@pytest.fixture
def running(tmp_path: Path, gateway: StandInGateway) -> Iterator[Running]:
    with running_responder(tmp_path, gateway) as started:
        yield started


def lock_down_once(running: Running) -> None:
    """The first alert: lockdown engaged, its call recorded and nothing pending."""
    assert running.post(alert()).json()["action"] == "lockdown"
    assert wait_until(
        lambda: running.caller.status().engaged == 1 and not running.caller.status().pending
    )


def since(running: Running, seq: int) -> list[dict[str, Any]]:
    return [entry for entry in running.entries() if entry["seq"] >= seq]


def post_repeat(running: Running) -> int:
    """Posts the first alert again; it is suppressed with a lockdown check. Returns its seq."""
    answer = running.post(alert()).json()
    assert (answer["action"], answer["lockdown_check"]) == ("suppressed", True)
    return int(answer["seq"])


def test_a_repeat_after_an_admin_lift_engages_lockdown_again(
    running: Running, gateway: StandInGateway
) -> None:
    lock_down_once(running)
    gateway.locked = False  # an admin lifts lockdown; the attack goes on
    seq = post_repeat(running)
    assert wait_until(lambda: gateway.locked and running.caller.status().engaged == 2)
    assert len(gateway.checks) == 1 and len(gateway.requests) == 2
    reason = gateway.requests[1]["body"]["reason"]
    assert "qcstack unexpected process" in reason and "the gateway was not locked" in reason
    assert wait_until(lambda: len(since(running, seq)) == 3)
    repeat, check, call = since(running, seq)
    assert (repeat["event"], repeat["action"], repeat["lockdown_check"]) == (
        "falco-alert",
        "suppressed",
        True,
    )
    assert (check["event"], check["state"], check["alerts"]) == ("lockdown-check", "not-locked", 1)
    assert (call["event"], call["outcome"]) == ("lockdown-call", "engaged")
    assert running.caller.status().pending is False


def test_a_repeat_while_locked_reads_the_state_and_engages_nothing(
    running: Running, gateway: StandInGateway
) -> None:
    lock_down_once(running)
    seq = post_repeat(running)
    assert wait_until(lambda: len(since(running, seq)) == 2)
    time.sleep(0.2)  # time for an engage call, were one to come
    assert len(gateway.checks) == 1 and len(gateway.requests) == 1
    repeat, check = since(running, seq)
    assert repeat["action"] == "suppressed" and repeat["lockdown_check"] is True
    assert (check["event"], check["state"]) == ("lockdown-check", "locked")
    status = running.client.get("/healthz").json()
    assert status["status"] == "ok" and status["lockdown"]["pending"] is False


@pytest.mark.parametrize(
    "health",
    [(500, b'{"error": "internal"}'), (200, b'{"ok": true}'), (200, b"<html>ok</html>")],
    ids=["http-500", "no-lockdown-field", "not-json"],
)
def test_a_repeat_when_the_gateway_state_cannot_be_read_engages_lockdown(
    running: Running, gateway: StandInGateway, health: tuple[int, bytes]
) -> None:
    lock_down_once(running)
    gateway.health_answer = health  # still locked, but it does not say so: fail closed
    seq = post_repeat(running)
    assert wait_until(lambda: running.caller.status().engaged == 2)
    assert len(gateway.requests) == 2
    assert "could not be read" in gateway.requests[1]["body"]["reason"]
    assert wait_until(lambda: len(since(running, seq)) == 3)
    _, check, call = since(running, seq)
    assert (check["event"], check["state"]) == ("lockdown-check", "unreadable") and check["error"]
    assert (call["event"], call["outcome"]) == ("lockdown-call", "engaged")


def test_a_repeat_while_the_gateway_is_unreachable_tries_to_engage_again(tmp_path: Path) -> None:
    started = Running(make_settings(tmp_path, "http://127.0.0.1:9"))
    try:
        assert started.post(alert()).json()["action"] == "lockdown"
        assert wait_until(lambda: started.caller.status().gave_up)
        seq = post_repeat(started)
        assert wait_until(lambda: len(since(started, seq)) == 6)
        _, check, *calls = since(started, seq)
        assert (check["event"], check["state"]) == ("lockdown-check", "unreadable")
        outcomes = [call["outcome"] for call in calls]
        assert outcomes == ["failed", "failed", "failed", "gave-up"]
    finally:
        started.caller.stop()


def test_a_storm_of_repeats_makes_a_bounded_number_of_calls_and_leaves_none_unchecked(
    running: Running, gateway: StandInGateway
) -> None:
    lock_down_once(running)
    gateway.locked = False  # lifted: the storm must lock it again, once
    started = time.monotonic()
    for _ in range(STORM - 1):
        post_repeat(running)
    before_last = time.monotonic()
    post_repeat(running)
    # The last repeat is checked too: a check starts after it came.
    assert wait_until(lambda: bool(gateway.checks) and gateway.checks[-1] >= before_last)
    spacing = running.settings.check_spacing_seconds
    time.sleep(3 * spacing)  # any check still to come
    bound = (time.monotonic() - started) / spacing + 1
    assert 1 <= len(gateway.checks) <= bound, (len(gateway.checks), bound)
    assert len(gateway.requests) == 2 and gateway.locked  # the first alert's, and one again
    checks = [e for e in running.entries() if e["event"] == "lockdown-check"]
    assert sum(check["alerts"] for check in checks) == STORM  # every repeat had its check


def test_a_repeat_of_an_alert_that_engages_nothing_checks_nothing(
    running: Running, gateway: StandInGateway
) -> None:
    answers = [running.post(alert("Warning")).json() for _ in range(3)]
    assert [(a["action"], a["lockdown_check"]) for a in answers] == [
        ("recorded", False),
        ("suppressed", False),
        ("suppressed", False),
    ]
    time.sleep(0.3)
    assert gateway.checks == [] and gateway.requests == []


def test_an_engage_answers_the_repeats_queued_with_it_and_later_repeats_are_checked_again(
    running: Running, gateway: StandInGateway
) -> None:
    gateway.engage_delay = 0.5  # the first engage is out while the next two alerts come
    assert running.post(alert()).json()["action"] == "lockdown"
    post_repeat(running)
    assert running.post(alert(container="other")).json()["action"] == "lockdown"
    assert wait_until(lambda: running.caller.status().engaged == 2)
    assert gateway.checks == []  # the second engage came after the repeat: it answers it
    assert "(and 1 more alerts)" in gateway.requests[1]["body"]["reason"]
    gateway.engage_delay = 0.0
    gateway.locked = False  # an admin lifts lockdown
    post_repeat(running)
    assert wait_until(lambda: running.caller.status().engaged == 3 and gateway.locked)
    assert len(gateway.checks) == 1
