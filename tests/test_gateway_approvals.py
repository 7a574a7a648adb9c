"""Approvals: bound to the exact call, used once, expiring, naming who decided; no secrets kept."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.approvals import ApprovalError, ApprovalState, ApprovalStore
from gateway.redact import REDACTED

DEPLOY: dict[str, Any] = {
    "model": {
        "projectId": 23456789,
        "compileId": "c-1",
        "nodeId": "LN-1",
        "brokerage": {"id": "InteractiveBrokersBrokerage", "ib-password": "hunter2-canary"},
    }
}


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> ApprovalStore:
    return ApprovalStore(tmp_path / "approvals", ttl_seconds=300, clock=clock)


def test_approved_call_runs_once(store: ApprovalStore) -> None:
    held = store.hold("create_live_algorithm", DEPLOY)
    store.approve(held.id, "alice")
    used = store.consume(held.id, "create_live_algorithm", DEPLOY)
    assert (used.state, used.decided_by) == (ApprovalState.USED, "alice")
    with pytest.raises(ApprovalError, match="used"):
        store.consume(held.id, "create_live_algorithm", DEPLOY)


@pytest.mark.parametrize(
    ("tool", "change"),
    [
        ("create_live_algorithm", {"nodeId": "LN-2"}),
        ("create_live_algorithm", {"brokerage": {"id": "InteractiveBrokersBrokerage"}}),
        ("create_live_command", {}),
    ],
    ids=["other-node", "other-brokerage-settings", "other-tool"],
)
def test_approval_does_not_cover_a_changed_call(
    store: ApprovalStore, tool: str, change: dict[str, Any]
) -> None:
    held = store.hold("create_live_algorithm", DEPLOY)
    store.approve(held.id, "alice")
    changed = {"model": {**DEPLOY["model"], **change}}
    with pytest.raises(ApprovalError, match="another call"):
        store.consume(held.id, tool, changed)


def test_unapproved_call_cannot_run(store: ApprovalStore) -> None:
    held = store.hold("create_live_algorithm", DEPLOY)
    with pytest.raises(ApprovalError, match="pending"):
        store.consume(held.id, "create_live_algorithm", DEPLOY)


def test_denied_call_cannot_run_or_be_approved_later(store: ApprovalStore) -> None:
    held = store.hold("create_live_algorithm", DEPLOY)
    store.deny(held.id, "bob")
    with pytest.raises(ApprovalError, match="denied"):
        store.consume(held.id, "create_live_algorithm", DEPLOY)
    with pytest.raises(ApprovalError, match="already denied"):
        store.approve(held.id, "alice")


@pytest.mark.parametrize("decide_first", [False, True])
def test_approval_expires(store: ApprovalStore, clock: Clock, decide_first: bool) -> None:
    held = store.hold("create_live_algorithm", DEPLOY)
    if decide_first:
        store.approve(held.id, "alice")
    clock.now += 301
    assert store.get(held.id).state is ApprovalState.EXPIRED
    with pytest.raises(ApprovalError, match="expired"):
        store.consume(held.id, "create_live_algorithm", DEPLOY)


def test_decision_must_name_who_made_it(store: ApprovalStore) -> None:
    held = store.hold("create_live_algorithm", DEPLOY)
    with pytest.raises(ApprovalError, match="who"):
        store.approve(held.id, " ")


def test_brokerage_secret_is_neither_shown_nor_stored(store: ApprovalStore) -> None:
    held = store.hold("create_live_algorithm", DEPLOY)
    assert held.arguments["model"]["brokerage"]["ib-password"] == REDACTED
    for path in store.directory.iterdir():
        assert "hunter2-canary" not in path.read_text()


def test_approvals_survive_a_restart(store: ApprovalStore, clock: Clock) -> None:
    held = store.hold("create_live_algorithm", DEPLOY)
    store.approve(held.id, "alice")
    again = ApprovalStore(store.directory, ttl_seconds=300, clock=clock)
    assert again.consume(held.id, "create_live_algorithm", DEPLOY).state is ApprovalState.USED


@pytest.mark.parametrize("approval_id", ["../../etc/passwd", "", "a/b", "nope"])
def test_unknown_or_malformed_id_is_refused(store: ApprovalStore, approval_id: str) -> None:
    with pytest.raises(ApprovalError, match="no approval"):
        store.get(approval_id)


def test_unwritable_store_refuses_to_start(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ApprovalError, match="refuses to start"):
        ApprovalStore(blocker / "approvals", ttl_seconds=300)
