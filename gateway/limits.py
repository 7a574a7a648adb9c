"""Per-tool rate limits and a budget for compute-spending tools, over sliding time windows."""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from gateway.tools import WAYS_OUT, ToolKind

_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)\s*s?\s*$")


@dataclass(frozen=True)
class RateLimit:
    calls: int
    seconds: float

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        """Reads `N/S`: at most N calls in any S seconds (`10/60`, `20/3600s`)."""
        match = _RATE.match(text)
        if not match or int(match[1]) < 1 or float(match[2]) <= 0:
            raise ValueError(f"{text!r} is not a rate: write calls/seconds, e.g. 10/60")
        return cls(int(match[1]), float(match[2]))

    def __str__(self) -> str:
        return f"{self.calls} calls per {self.seconds:g}s"


@dataclass
class Limiter:
    """Counts calls that went ahead; refuses one that would exceed a limit. Stop and liquidate
    are never limited: they are how a person, or the agent, gets out."""

    per_tool: Mapping[str, RateLimit] = field(default_factory=dict)
    default: RateLimit | None = None
    compute_budget: RateLimit | None = None
    clock: Callable[[], float] = time.monotonic
    _seen: dict[str, deque[float]] = field(default_factory=dict, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def admit(self, tool: str, kind: ToolKind) -> str | None:
        """None when the call may go ahead (and it is counted); else why it may not."""
        if tool in WAYS_OUT:
            return None
        checks = []
        limit = self.per_tool.get(tool, self.default)
        if limit is not None:
            checks.append((f"tool:{tool}", limit, f"rate limit of {tool}"))
        if kind is ToolKind.COMPUTE and self.compute_budget is not None:
            checks.append(("compute", self.compute_budget, "compute budget"))
        now = self.clock()
        with self._lock:
            for key, rate, what in checks:
                window = self._window(key, now, rate)
                if len(window) >= rate.calls:
                    wait = rate.seconds - (now - window[0])
                    return f"{what} reached ({rate}); try again in {wait:.0f}s"
            for key, _, _ in checks:
                self._seen[key].append(now)
        return None

    def _window(self, key: str, now: float, rate: RateLimit) -> deque[float]:
        window = self._seen.setdefault(key, deque())
        while window and now - window[0] >= rate.seconds:
            window.popleft()
        return window
