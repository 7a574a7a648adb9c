"""Repeated alerts: the same rule about the same container within a window is a repeat."""

from __future__ import annotations

import time
from collections.abc import Callable

MAX_TRACKED = 10_000
"""Distinct (rule, container) pairs remembered; a flood of new ones cannot grow memory."""


class Repeats:
    """Remembers when each (rule, container) pair was last let through. A repeat within the
    window does not move that time, so a behaviour that goes on gets through once a window."""

    def __init__(self, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self.clock = clock
        self._passed: dict[tuple[str, str], float] = {}

    def is_repeat(self, rule: str, container: str) -> bool:
        """True for a repeat within the window; otherwise the pair is let through and noted."""
        now = self.clock()
        key = (rule, container)
        last = self._passed.get(key)
        if last is not None and now - last < self.window:
            return True
        if len(self._passed) >= MAX_TRACKED:
            self._passed = {k: t for k, t in self._passed.items() if now - t < self.window}
            if len(self._passed) >= MAX_TRACKED:
                self._passed.pop(next(iter(self._passed)))
        self._passed[key] = now
        return False
