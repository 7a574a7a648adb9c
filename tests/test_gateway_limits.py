"""Rate limits per tool and the compute budget: clear refusals, sliding windows, ways out exempt."""

from __future__ import annotations

import pytest

from gateway.limits import Limiter, RateLimit
from gateway.tools import ToolKind


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(("text", "rate"), [("10/60", (10, 60.0)), (" 2 / 0.5s ", (2, 0.5))])
def test_rate_is_read_as_calls_per_seconds(text: str, rate: tuple[int, float]) -> None:
    parsed = RateLimit.parse(text)
    assert (parsed.calls, parsed.seconds) == rate


@pytest.mark.parametrize("text", ["", "10", "0/60", "10/0", "ten/60", "-1/60", "10/-5"])
def test_bad_rate_is_refused_with_an_example(text: str) -> None:
    with pytest.raises(ValueError, match=r"e\.g\. 10/60"):
        RateLimit.parse(text)


def test_tool_limit_refuses_the_call_over_it_then_frees_up() -> None:
    clock = Clock()
    limiter = Limiter(per_tool={"create_project": RateLimit(2, 60)}, clock=clock)
    assert limiter.admit("create_project", ToolKind.WRITE) is None
    assert limiter.admit("create_project", ToolKind.WRITE) is None
    refused = limiter.admit("create_project", ToolKind.WRITE)
    assert refused is not None and "rate limit of create_project" in refused
    assert "try again in 60s" in refused
    clock.now = 60.0
    assert limiter.admit("create_project", ToolKind.WRITE) is None


def test_compute_budget_is_shared_by_all_compute_tools() -> None:
    limiter = Limiter(compute_budget=RateLimit(2, 3600), clock=Clock())
    assert limiter.admit("create_backtest", ToolKind.COMPUTE) is None
    assert limiter.admit("create_optimization", ToolKind.COMPUTE) is None
    refused = limiter.admit("create_compile", ToolKind.COMPUTE)
    assert refused is not None and "compute budget" in refused
    assert limiter.admit("read_backtest", ToolKind.READ) is None


def test_refused_call_does_not_use_up_the_budget() -> None:
    clock = Clock()
    limiter = Limiter(
        per_tool={"create_backtest": RateLimit(1, 10)},
        compute_budget=RateLimit(2, 100),
        clock=clock,
    )
    assert limiter.admit("create_backtest", ToolKind.COMPUTE) is None
    assert limiter.admit("create_backtest", ToolKind.COMPUTE) is not None
    assert limiter.admit("create_compile", ToolKind.COMPUTE) is None  # budget: 2nd of 2


@pytest.mark.parametrize("tool", ["stop_live_algorithm", "liquidate_live_algorithm"])
def test_ways_out_are_never_limited(tool: str) -> None:
    limiter = Limiter(default=RateLimit(1, 60), clock=Clock())
    assert all(limiter.admit(tool, ToolKind.LIVE) is None for _ in range(5))
