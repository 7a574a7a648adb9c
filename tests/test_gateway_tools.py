"""Tools have a kind decided by their name; unknown names have none (infra_tests/test_server.py
checks the server lists exactly the classified tools)."""

from __future__ import annotations

import pytest

from gateway.tools import TOOL_KINDS, WAYS_OUT, ToolKind, kind_of

LIVE_TRADING = {
    "create_live_algorithm",
    "stop_live_algorithm",
    "liquidate_live_algorithm",
    "create_live_command",
    "broadcast_live_command",
    "authorize_connection",
}


def test_the_live_trading_tools_are_live() -> None:
    assert {name for name, kind in TOOL_KINDS.items() if kind is ToolKind.LIVE} == LIVE_TRADING


def test_ways_out_are_live_tools_that_reduce_exposure() -> None:
    assert {"stop_live_algorithm", "liquidate_live_algorithm"} == WAYS_OUT


@pytest.mark.parametrize("name", ["create_live_algorithm_v2", "", "READ_ACCOUNT", "read_account "])
def test_unknown_tool_has_no_kind(name: str) -> None:
    assert kind_of(name) is None
