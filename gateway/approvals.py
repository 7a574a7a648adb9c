"""Held calls and a person's decision on each: bound to the exact call, used once, expiring."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from gateway.audit import canonical
from gateway.redact import redact


class ApprovalState(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"
    USED = "used"


class ApprovalError(RuntimeError):
    """An approval cannot be given or used; the message says why, for the agent or operator."""


def call_digest(tool: str, arguments: Mapping[str, Any]) -> str:
    """What an approval is bound to: the tool and its arguments in canonical JSON."""
    return hashlib.sha256(canonical({"tool": tool, "arguments": dict(arguments)})).hexdigest()


@dataclass(frozen=True)
class Approval:
    id: str
    digest: str
    tool: str
    arguments: dict[str, Any]
    """Redacted: what a person is shown. The digest covers the real arguments."""
    state: ApprovalState
    created: float
    expires: float
    decided_by: str | None = None
    decided_at: float | None = None


class ApprovalStore:
    """One JSON file per approval in `directory` (a volume), each written atomically."""

    def __init__(
        self, directory: Path, ttl_seconds: float, clock: Callable[[], float] = time.time
    ) -> None:
        self.directory = directory
        self.ttl_seconds = ttl_seconds
        self.clock = clock
        self._lock = threading.Lock()
        try:
            directory.mkdir(parents=True, exist_ok=True)
            probe = directory / ".writable"
            probe.write_text("")
            probe.unlink()
        except OSError as error:
            raise ApprovalError(
                f"the approval store {directory} is not writable ({error.strerror}): live "
                "trading calls cannot be held, so the gateway refuses to start"
            ) from error

    def hold(self, tool: str, arguments: Mapping[str, Any]) -> Approval:
        """Records a pending approval for this exact call."""
        now = self.clock()
        approval = Approval(
            id=secrets.token_urlsafe(9),
            digest=call_digest(tool, arguments),
            tool=tool,
            arguments=redact(dict(arguments)),
            state=ApprovalState.PENDING,
            created=now,
            expires=now + self.ttl_seconds,
        )
        with self._lock:
            self._write(approval)
        return approval

    def get(self, approval_id: str) -> Approval:
        with self._lock:
            return self._read(approval_id)

    def all(self) -> list[Approval]:
        with self._lock:
            found = [self._read(p.stem) for p in self.directory.glob("*.json")]
        return sorted(found, key=lambda a: a.created)

    def approve(self, approval_id: str, who: str) -> Approval:
        return self._decide(approval_id, who, ApprovalState.APPROVED)

    def deny(self, approval_id: str, who: str) -> Approval:
        return self._decide(approval_id, who, ApprovalState.DENIED)

    def consume(self, approval_id: str, tool: str, arguments: Mapping[str, Any]) -> Approval:
        """Uses an approval for this call, once; raises ApprovalError unless it is approved,
        unexpired, unused and for exactly this tool and these arguments."""
        with self._lock:
            approval = self._read(approval_id)
            if approval.state is not ApprovalState.APPROVED:
                raise ApprovalError(f"approval {approval_id} is {approval.state}, not approved")
            if approval.digest != call_digest(tool, arguments):
                raise ApprovalError(
                    f"approval {approval_id} was given for another call; any changed argument "
                    "needs a new approval"
                )
            used = replace(approval, state=ApprovalState.USED)
            self._write(used)
            return used

    def _decide(self, approval_id: str, who: str, state: ApprovalState) -> Approval:
        if not who.strip():
            raise ApprovalError("an approval decision must name who made it")
        with self._lock:
            approval = self._read(approval_id)
            if approval.state is not ApprovalState.PENDING:
                raise ApprovalError(f"approval {approval_id} is already {approval.state}")
            decided = replace(approval, state=state, decided_by=who, decided_at=self.clock())
            self._write(decided)
            return decided

    def _path(self, approval_id: str) -> Path:
        if not approval_id.replace("-", "").replace("_", "").isalnum():
            raise ApprovalError(f"no approval {approval_id!r}")
        return self.directory / f"{approval_id}.json"

    def _read(self, approval_id: str) -> Approval:
        try:
            data = json.loads(self._path(approval_id).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ApprovalError(f"no approval {approval_id!r}") from None
        approval = Approval(**{**data, "state": ApprovalState(data["state"])})
        open_states = (ApprovalState.PENDING, ApprovalState.APPROVED)
        if approval.state in open_states and self.clock() >= approval.expires:
            approval = replace(approval, state=ApprovalState.EXPIRED)
            self._write(approval)
        return approval

    def _write(self, approval: Approval) -> None:
        path = self._path(approval.id)
        temporary = path.with_suffix(".tmp")
        with temporary.open("w", encoding="utf-8") as handle:
            json.dump(asdict(approval), handle, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        temporary.replace(path)
        directory = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
