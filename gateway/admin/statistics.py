"""The hook that shows a project's latest backtest beside a held deployment, filled by whatever
can ask QuantConnect (the upstream client); without one the page says it is not available."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

# The statistics of a backtest summary (QuantConnect's BacktestSummaryResult) worth a glance
# before money is committed, in the order shown.
SHOWN_STATISTICS = (
    "netProfit",
    "compoundingAnnualReturn",
    "drawdown",
    "sharpeRatio",
    "sortinoRatio",
    "psr",
    "winRate",
    "lossRate",
    "trades",
    "alpha",
    "beta",
)


@dataclass(frozen=True)
class BacktestStatistics:
    backtest_id: str
    name: str
    created: str
    statistics: Mapping[str, str] = field(default_factory=dict)


class StatisticsProvider(Protocol):
    async def latest_backtest(self, project_id: int) -> BacktestStatistics | None:
        """The project's most recent backtest, or None when it has none."""


class NoStatistics:
    """For a gateway with nothing to ask: the page shows that statistics are not available."""

    async def latest_backtest(self, project_id: int) -> BacktestStatistics | None:
        raise LookupError("no backtest statistics provider is configured")


ToolCaller = Callable[[str, dict[str, Any]], Awaitable[Mapping[str, Any]]]
"""Calls one upstream tool by name with its arguments; returns its structured result."""


@dataclass(frozen=True)
class ListBacktestsStatistics:
    """Asks the upstream's list_backtests tool (with statistics) and keeps the newest entry."""

    call_tool: ToolCaller

    async def latest_backtest(self, project_id: int) -> BacktestStatistics | None:
        answer = await self.call_tool(
            "list_backtests", {"model": {"projectId": project_id, "includeStatistics": True}}
        )
        if answer.get("success") is False:
            errors = answer.get("errors") or ["no reason given"]
            raise LookupError(f"list_backtests refused: {'; '.join(map(str, errors))}")
        backtests = [b for b in answer.get("backtests") or [] if isinstance(b, Mapping)]
        if not backtests:
            return None
        newest = max(backtests, key=lambda b: str(b.get("created") or ""))
        return BacktestStatistics(
            backtest_id=str(newest.get("backtestId") or ""),
            name=str(newest.get("name") or ""),
            created=str(newest.get("created") or ""),
            statistics={
                key: str(newest[key]) for key in SHOWN_STATISTICS if newest.get(key) is not None
            },
        )
