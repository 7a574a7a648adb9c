"""Engages the gateway's lockdown: one background thread calls POST /admin/api/lockdown/engage
at once, retries with backoff when the gateway cannot be reached, records every outcome, and
never lifts anything. A repeated alert asks it to ensure lockdown instead: it reads the gateway's
state first and engages only when the gateway does not say it is locked."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from responder.gatewaycalls import StateUnreadable, engage, is_locked
from responder.settings import ResponderSettings

MAX_REASON_CHARS = 400
logger = logging.getLogger("qcstack.responder.lockdown")

Record = Callable[[Mapping[str, Any]], object]
"""Appends an event to the audit log."""


@dataclass(frozen=True)
class Wanted:
    reason: str
    trace: str | None
    check_first: bool = False
    """A repeat's: engage only when the gateway does not say it is locked already."""


@dataclass(frozen=True)
class CallerStatus:
    """What /healthz reports of the lockdown calls."""

    pending: bool
    failures: int
    """Failed calls for the lockdown in hand (or the last one, when it was given up)."""
    gave_up: bool
    last_error: str
    engaged: int
    """Lockdowns the gateway confirmed since the responder started."""

    @property
    def failing(self) -> bool:
        return self.gave_up or (self.pending and self.failures > 0)


class LockdownCaller:
    def __init__(self, settings: ResponderSettings, token: bytes, record: Record) -> None:
        self.settings = settings
        self._token = token
        self._record = record
        self._wanted: queue.Queue[Wanted | None] = queue.Queue()
        self._lock = threading.Lock()
        self._status = CallerStatus(False, 0, False, "", 0)
        self._stopping = threading.Event()
        self._last_check = float("-inf")
        """When the last check of the gateway's state started (time.monotonic)."""
        self._engages_queued = 0
        """Engages asked for and not yet taken by the thread: /healthz's `pending` after a call."""
        self._repeats_unchecked = 0
        """Repeats whose check has not started yet: the first of them queues the check, the
        others share it and queue nothing (a storm is a counter, not a queue)."""
        self._thread = threading.Thread(target=self._run, name="qcstack-lockdown", daemon=True)
        self._thread.start()

    def engage(self, reason: str, trace: str | None) -> None:
        """Asks for lockdown and returns: the call starts at once on the background thread, so
        the alert's answer never waits for the gateway."""
        with self._lock:
            self._status = CallerStatus(True, 0, False, "", self._status.engaged)
            self._engages_queued += 1
            self._wanted.put(Wanted(reason[:MAX_REASON_CHARS], trace))

    def ensure(self, reason: str, trace: str | None) -> None:
        """Asks for lockdown unless the gateway is locked already (a repeat's: an admin may have
        lifted the first alert's lockdown). Returns at once; checks asked for while one waits
        share it, and they start at least check_spacing_seconds apart."""
        with self._lock:
            self._repeats_unchecked += 1
            if self._repeats_unchecked == 1:
                self._wanted.put(Wanted(reason[:MAX_REASON_CHARS], trace, check_first=True))

    def status(self) -> CallerStatus:
        with self._lock:
            return self._status

    def stop(self) -> None:
        self._stopping.set()
        self._wanted.put(None)
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            # Alerts that came while a call was out need no call of their own: one engages all,
            # and an engage makes a check queued with it needless.
            engages = [wanted for wanted in batch if not wanted.check_first]
            if not engages:
                self._check_then_deliver(batch[0])
                continue
            with self._lock:
                self._engages_queued -= len(engages)
                repeats = self._take_repeats() if len(engages) < len(batch) else 0
            more = len(engages) - 1 + repeats
            first = engages[0]
            reason = first.reason if not more else f"{first.reason} (and {more} more alerts)"
            self._deliver(Wanted(reason[:MAX_REASON_CHARS], first.trace))

    def _next_batch(self) -> list[Wanted] | None:
        """The next wanted lockdown and all queued behind it; None to stop. A check alone first
        waits out the spacing since the last one, gathering what comes meanwhile (repeats join
        it; an engage ends the wait, and the engage answers the repeats too)."""
        first = self._wanted.get()
        if first is None:
            return None
        batch = [first]
        while True:
            wait = 0.0
            if all(wanted.check_first for wanted in batch):
                wait = self._last_check + self.settings.check_spacing_seconds - time.monotonic()
            try:
                more = self._wanted.get(timeout=wait) if wait > 0 else self._wanted.get_nowait()
            except queue.Empty:
                return batch
            if more is None:
                return None
            batch.append(more)

    def _take_repeats(self) -> int:
        """The repeats waiting for a check, which the check (or engage) about to start answers;
        a repeat after this queues a check of its own. Called with the lock held."""
        repeats, self._repeats_unchecked = self._repeats_unchecked, 0
        return repeats

    def _check_then_deliver(self, wanted: Wanted) -> None:
        """Reads the gateway's state; engages when it is not locked or cannot be read."""
        with self._lock:
            repeats = self._take_repeats()
        self._last_check = time.monotonic()
        check: dict[str, Any] = {"alerts": repeats, "trace": wanted.trace}
        try:
            locked = is_locked(self.settings)
        except StateUnreadable as error:
            self._keep("lockdown-check", {"state": "unreadable", "error": str(error), **check})
            logger.warning("cannot read the gateway's lockdown state (%s): engaging it", error)
            reason = f"{wanted.reason}; the gateway's lockdown state could not be read"
        else:
            self._keep("lockdown-check", {"state": "locked" if locked else "not-locked", **check})
            if locked:
                return
            logger.warning("a repeated alert and the gateway is not locked: engaging it again")
            reason = f"{wanted.reason}; the gateway was not locked"
        with self._lock:
            self._status = CallerStatus(True, 0, False, "", self._status.engaged)
        self._deliver(Wanted(reason[:MAX_REASON_CHARS], wanted.trace))

    def _deliver(self, wanted: Wanted) -> None:
        delay = self.settings.retry_first_seconds
        attempts = self.settings.retry_attempts
        for attempt in range(1, attempts + 1):
            error = engage(self.settings, self._token, wanted.reason)
            if error is None:
                self._keep(
                    "lockdown-call",
                    {"outcome": "engaged", "attempt": attempt, "trace": wanted.trace},
                )
                logger.warning("lockdown engaged at the gateway (attempt %d)", attempt)
                with self._lock:
                    queued = self._engages_queued > 0
                    self._status = CallerStatus(queued, 0, False, "", self._status.engaged + 1)
                return
            self._note_failure(wanted, attempt, error)
            if attempt < attempts and self._stopping.wait(delay):
                return
            delay = min(delay * 2, self.settings.retry_max_seconds)
        self._keep(
            "lockdown-call", {"outcome": "gave-up", "attempts": attempts, "trace": wanted.trace}
        )
        logger.error(
            "gave up engaging lockdown after %d attempts: the gateway is NOT locked "
            "down by this alert; engage it by hand (bin/qcstack lockdown engage)",
            attempts,
        )
        with self._lock:
            s = self._status
            self._status = CallerStatus(False, s.failures, True, s.last_error, s.engaged)

    def _note_failure(self, wanted: Wanted, attempt: int, error: str) -> None:
        self._keep(
            "lockdown-call",
            {"outcome": "failed", "attempt": attempt, "error": error, "trace": wanted.trace},
        )
        left = self.settings.retry_attempts - attempt
        logger.warning("lockdown call %d failed: %s; %d attempts left", attempt, error, left)
        with self._lock:
            self._status = CallerStatus(True, attempt, False, error, self._status.engaged)

    def _keep(self, event: str, call: Mapping[str, Any]) -> None:
        """Records one call's outcome; an audit log that fails must not stop the retries."""
        try:
            self._record({"event": event, **call})
        except Exception:
            logger.exception("cannot record a lockdown call in the audit log")
