"""The kill switch's state: a file on the gateway's volume, so lockdown survives a restart."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LockdownState:
    locked: bool
    by: str = ""
    reason: str = ""
    since: float = 0.0


class Lockdown:
    """Reads the flag on every call; a flag it cannot read counts as locked (fail closed)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def state(self) -> LockdownState:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return LockdownState(
                locked=bool(data["locked"]),
                by=str(data.get("by", "")),
                reason=str(data.get("reason", "")),
                since=float(data.get("since", 0.0)),
            )
        except FileNotFoundError:
            return LockdownState(locked=False)
        except (OSError, ValueError, KeyError, TypeError) as error:
            return LockdownState(True, "gateway", f"lockdown state {self.path} unreadable: {error}")

    def engage(self, by: str, reason: str) -> LockdownState:
        return self._write(LockdownState(True, by, reason, time.time()))

    def lift(self, by: str) -> LockdownState:
        """Lifts lockdown; the caller has checked the admin credential."""
        return self._write(LockdownState(False, by, "lifted", time.time()))

    def _write(self, state: LockdownState) -> LockdownState:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        with temporary.open("w", encoding="utf-8") as handle:
            json.dump(state.__dict__, handle)
            handle.flush()
            os.fsync(handle.fileno())
        temporary.replace(self.path)
        return state
