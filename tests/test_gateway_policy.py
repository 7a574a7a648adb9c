"""The tool policy: profiles, live trading held or refused, unknown tools and lockdown."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.policy import PAPER_BROKERAGE, Profile, Verdict, decide, listed
from gateway.tools import TOOL_KINDS, ToolKind

LIVE_DEPLOY = {"model": {"projectId": 1, "brokerage": {"id": "InteractiveBrokersBrokerage"}}}
PAPER_DEPLOY = {"model": {"projectId": 1, "brokerage": {"id": PAPER_BROKERAGE}}}


def verdict(tool: str, profile: Profile, arguments: Any = None, **kwargs: Any) -> Verdict:
    return decide(tool, arguments or {}, profile, **kwargs).verdict


@pytest.mark.parametrize("profile", list(Profile))
def test_unknown_tool_is_denied_and_unlisted_in_every_profile(profile: Profile) -> None:
    assert verdict("create_live_algorithm_v2", profile) is Verdict.DENY
    assert not listed("create_live_algorithm_v2", profile)


@pytest.mark.parametrize(
    ("profile", "kinds"),
    [
        (Profile.READ_ONLY, {ToolKind.READ}),
        (Profile.RESEARCH, {ToolKind.READ, ToolKind.WRITE, ToolKind.COMPUTE}),
        (Profile.PAPER, set(ToolKind)),
        (Profile.LIVE, set(ToolKind)),
    ],
)
def test_profile_lists_exactly_its_kinds(profile: Profile, kinds: set[ToolKind]) -> None:
    assert {t for t in TOOL_KINDS if listed(t, profile)} == {
        t for t, k in TOOL_KINDS.items() if k in kinds
    }


@pytest.mark.parametrize("profile", [Profile.READ_ONLY, Profile.RESEARCH])
def test_agent_cannot_deploy_live_outside_a_trading_profile(profile: Profile) -> None:
    assert verdict("create_live_algorithm", profile, PAPER_DEPLOY) is Verdict.DENY


def test_live_deploy_waits_for_a_person_in_the_live_profile() -> None:
    assert verdict("create_live_algorithm", Profile.LIVE, LIVE_DEPLOY) is Verdict.HOLD


@pytest.mark.parametrize("tool", ["create_live_command", "broadcast_live_command"])
def test_live_commands_wait_for_a_person(tool: str) -> None:
    assert verdict(tool, Profile.LIVE) is Verdict.HOLD
    assert verdict(tool, Profile.PAPER) is Verdict.HOLD


def test_paper_profile_deploys_on_the_paper_brokerage_without_approval() -> None:
    assert verdict("create_live_algorithm", Profile.PAPER, PAPER_DEPLOY) is Verdict.ALLOW


@pytest.mark.parametrize(
    "arguments",
    [LIVE_DEPLOY, {}, {"model": {}}, {"model": {"brokerage": "QuantConnectBrokerage"}}],
    ids=["real-brokerage", "no-model", "no-brokerage", "brokerage-not-an-object"],
)
def test_paper_profile_refuses_any_other_deploy(arguments: Any) -> None:
    decision = decide("create_live_algorithm", arguments, Profile.PAPER)
    assert decision.verdict is Verdict.DENY
    assert PAPER_BROKERAGE in decision.reason


def test_paper_profile_connects_no_brokerage() -> None:
    assert verdict("authorize_connection", Profile.PAPER) is Verdict.DENY


@pytest.mark.parametrize("profile", [Profile.PAPER, Profile.LIVE])
@pytest.mark.parametrize("tool", ["stop_live_algorithm", "liquidate_live_algorithm"])
def test_stop_and_liquidate_are_never_held(profile: Profile, tool: str) -> None:
    assert verdict(tool, profile) is Verdict.ALLOW
    assert verdict(tool, profile, lockdown=True) is Verdict.ALLOW


@pytest.mark.parametrize(
    "tool", ["create_backtest", "update_file_contents", "create_live_algorithm", "delete_project"]
)
def test_lockdown_refuses_everything_but_reads_and_ways_out(tool: str) -> None:
    decision = decide(tool, PAPER_DEPLOY, Profile.LIVE, lockdown=True)
    assert decision.verdict is Verdict.DENY
    assert "lockdown" in decision.reason


def test_lockdown_lets_reads_through() -> None:
    assert verdict("read_live_portfolio", Profile.LIVE, lockdown=True) is Verdict.ALLOW


def test_operator_can_hold_further_tools() -> None:
    held = frozenset({"delete_project"})
    assert verdict("delete_project", Profile.RESEARCH, held_tools=held) is Verdict.HOLD
    assert verdict("delete_file", Profile.RESEARCH, held_tools=held) is Verdict.ALLOW
