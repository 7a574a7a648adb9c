"""The tool policy: which tools a profile lists, and whether a call passes, waits or is refused."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from gateway.tools import WAYS_OUT, ToolKind, kind_of


class Profile(StrEnum):
    READ_ONLY = "read-only"
    RESEARCH = "research"
    """Reads, writing strategy code, compiles, backtests and optimizations; no live trading."""
    PAPER = "paper"
    """Research, plus deploying on QuantConnect's paper brokerage; real brokerages refused."""
    LIVE = "live"
    """Research, plus live trading: every call that opens or changes positions waits for a human."""


PROFILE_KINDS = MappingProxyType(
    {
        Profile.READ_ONLY: frozenset({ToolKind.READ}),
        Profile.RESEARCH: frozenset({ToolKind.READ, ToolKind.WRITE, ToolKind.COMPUTE}),
        Profile.PAPER: frozenset(ToolKind),
        Profile.LIVE: frozenset(ToolKind),
    }
)
PAPER_BROKERAGE = "QuantConnectBrokerage"
"""QuantConnect's own paper-trading brokerage: simulated fills, no money."""


class Verdict(StrEnum):
    ALLOW = "allow"
    HOLD = "hold"
    """Wait for a person to approve this exact call."""
    DENY = "deny"


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    reason: str
    """Why, in words the agent (and the audit log) can read."""


def listed(tool: str, profile: Profile) -> bool:
    """Whether `tool` is shown to clients at all under `profile`."""
    kind = kind_of(tool)
    return kind is not None and kind in PROFILE_KINDS[profile]


def brokerage_id(arguments: Mapping[str, Any]) -> str | None:
    """The brokerage a create_live_algorithm call names (arguments are {"model": {...}})."""
    model = arguments.get("model")
    brokerage = model.get("brokerage") if isinstance(model, Mapping) else None
    value = brokerage.get("id") if isinstance(brokerage, Mapping) else None
    return value if isinstance(value, str) else None


def decide(
    tool: str,
    arguments: Mapping[str, Any],
    profile: Profile,
    *,
    held_tools: frozenset[str] = frozenset(),
    lockdown: bool = False,
) -> Decision:
    """The verdict on one call. `held_tools`: further tools the operator wants approved."""
    kind = kind_of(tool)
    if kind is None:
        return Decision(
            Verdict.DENY,
            f"tool {tool!r} is not classified by this gateway (a newer server?); it is denied "
            "until an operator classifies it in gateway/tools.py",
        )
    if lockdown and kind is not ToolKind.READ and tool not in WAYS_OUT:
        return Decision(
            Verdict.DENY,
            f"the gateway is in lockdown: only reads, stop_live_algorithm and "
            f"liquidate_live_algorithm pass; {tool!r} is refused",
        )
    if kind not in PROFILE_KINDS[profile]:
        return Decision(
            Verdict.DENY, f"tool {tool!r} ({kind} tool) is not allowed in profile {profile}"
        )
    if tool in WAYS_OUT:
        return Decision(Verdict.ALLOW, f"{tool} reduces exposure: never held")
    if profile is Profile.PAPER and kind is ToolKind.LIVE:
        return _paper_decision(tool, arguments)
    if kind is ToolKind.LIVE:
        return Decision(Verdict.HOLD, f"{tool} is live trading: a person must approve this call")
    if tool in held_tools:
        return Decision(Verdict.HOLD, f"{tool} needs approval (settings: held tools)")
    return Decision(Verdict.ALLOW, f"{kind} tool allowed in profile {profile}")


def _paper_decision(tool: str, arguments: Mapping[str, Any]) -> Decision:
    if tool == "create_live_algorithm":
        brokerage = brokerage_id(arguments)
        if brokerage == PAPER_BROKERAGE:
            return Decision(Verdict.ALLOW, f"deploys on {PAPER_BROKERAGE} (paper trading)")
        return Decision(
            Verdict.DENY,
            f"profile paper deploys on {PAPER_BROKERAGE} only; this call names brokerage "
            f"{brokerage!r}",
        )
    if tool == "authorize_connection":
        return Decision(Verdict.DENY, "profile paper connects no real brokerage")
    # A command may reach an algorithm that trades real money: the gateway cannot tell.
    return Decision(Verdict.HOLD, f"{tool} may reach a real-money algorithm: approve it")
