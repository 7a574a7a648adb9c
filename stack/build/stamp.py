"""Records which lock a fetched folder holds, so an unchanged lock fetches nothing again."""

from __future__ import annotations

import hashlib
from pathlib import Path

STAMP = ".lock-sha256"


def lock_digest(lock: Path) -> str:
    return hashlib.sha256(lock.read_bytes()).hexdigest()


def holds(target: Path, lock: Path) -> bool:
    """Whether `target` was fetched, completely, for exactly this lock."""
    stamp = target / STAMP
    return stamp.exists() and stamp.read_text() == lock_digest(lock)


def mark(target: Path, lock: Path) -> None:
    """Written last, once everything of `lock` is in `target`."""
    (target / STAMP).write_text(lock_digest(lock))
