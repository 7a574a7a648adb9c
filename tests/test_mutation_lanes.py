"""The mutation check's lanes: mutant stacks side by side, each with a subnet, ports and project
of its own."""

from __future__ import annotations

import threading
import time
from ipaddress import IPv4Network

import pytest

from stack import mutation
from stack.controls import CONTROLS_BY_ID, Control
from stack.mutation import MutationResult, check_in_lanes
from stack.process import CommandError
from stack.settings import Settings
from stack.suites import lane_settings, mutant_project_name


def test_lane_zero_is_the_test_stacks_own() -> None:
    settings = Settings()
    assert lane_settings(settings, 0) is settings


@pytest.mark.parametrize("lane", [1, 2, 3])
def test_lanes_never_share_a_subnet_port_or_project(lane: int) -> None:
    settings = Settings()
    lanes = [lane_settings(settings, k) for k in range(lane + 1)]
    for field in ("test_gateway_port", "test_responder_port", "test_project_name"):
        assert len({getattr(s, field) for s in lanes}) == len(lanes), field
    assert len({mutant_project_name(s) for s in lanes}) == len(lanes)
    subnets = [s.test_egress_subnet for s in lanes]
    assert not any(a.overlaps(b) for i, a in enumerate(subnets) for b in subnets[i + 1 :])
    assert subnets[lane] == IPv4Network(
        (int(settings.test_egress_subnet.network_address) + 16 * lane, 28)
    )


def test_a_lane_outside_the_private_ranges_is_refused() -> None:
    settings = Settings(test_egress_subnet=IPv4Network("10.255.255.240/28"))
    with pytest.raises(CommandError, match="mutation lane 1 has no room"):
        lane_settings(settings, 1)


def test_jobs_share_the_lanes_and_results_keep_their_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    busy: set[int] = set()
    overlapped = threading.Event()
    lock = threading.Lock()

    def hold(lane: int) -> None:
        with lock:
            assert lane not in busy, f"lane {lane} given to two jobs at once"
            busy.add(lane)
            if len(busy) > 1:
                overlapped.set()
        time.sleep(0.05)
        with lock:
            busy.discard(lane)

    def check_control(
        settings: Settings, control: Control, base: str, lane: int = 0
    ) -> MutationResult:
        hold(lane)
        return MutationResult(control.id, {"config": 1, "behaviour": 1}, {})

    def check_rules_controls(
        settings: Settings, controls: list[Control], lane: int = 0
    ) -> list[MutationResult]:
        hold(lane)
        return [MutationResult(c.id, {"config": 1, "behaviour": 1}, {}) for c in controls]

    monkeypatch.setattr(mutation, "check_control", check_control)
    monkeypatch.setattr(mutation, "check_rules_controls", check_rules_controls)
    in_stack = [CONTROLS_BY_ID[i] for i in ("RUN-01", "RUN-02", "RUN-03", "NET-01", "GW-01")]
    in_rules = [CONTROLS_BY_ID[i] for i in ("DET-01", "DET-02")]
    results = check_in_lanes(Settings(mutation_lanes=2), in_stack, in_rules, "base")
    assert [r.control for r in results] == ["DET-01", "DET-02", *(c.id for c in in_stack)]
    assert overlapped.is_set(), "two lanes never ran at once"
