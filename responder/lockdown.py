"""Engages the gateway's lockdown: one background thread calls POST /admin/api/lockdown/engage
at once, retries with backoff when the gateway cannot be reached, records every outcome, and
never lifts anything."""

from __future__ import annotations

import http.client
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from responder.settings import ResponderSettings

ENGAGE_PATH = "/admin/api/lockdown/engage"
MAX_REASON_CHARS = 400
logger = logging.getLogger("qcstack.responder.lockdown")

Record = Callable[[Mapping[str, Any]], object]
"""Appends an event to the audit log."""


@dataclass(frozen=True)
class Wanted:
    reason: str
    trace: str | None


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
        self._thread = threading.Thread(target=self._run, name="qcstack-lockdown", daemon=True)
        self._thread.start()

    def engage(self, reason: str, trace: str | None) -> None:
        """Asks for lockdown and returns: the call starts at once on the background thread, so
        the alert's answer never waits for the gateway."""
        with self._lock:
            self._status = CallerStatus(True, 0, False, "", self._status.engaged)
        self._wanted.put(Wanted(reason[:MAX_REASON_CHARS], trace))

    def status(self) -> CallerStatus:
        with self._lock:
            return self._status

    def stop(self) -> None:
        self._stopping.set()
        self._wanted.put(None)
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            wanted = self._wanted.get()
            if wanted is None:
                return
            # Alerts that came while a call was out need no call of their own: one engages all.
            more = 0
            while not self._wanted.empty():
                if self._wanted.get_nowait() is None:
                    return
                more += 1
            reason = wanted.reason if not more else f"{wanted.reason} (and {more} more alerts)"
            self._deliver(Wanted(reason[:MAX_REASON_CHARS], wanted.trace))

    def _deliver(self, wanted: Wanted) -> None:
        delay = self.settings.retry_first_seconds
        attempts = self.settings.retry_attempts
        for attempt in range(1, attempts + 1):
            error = self._call(wanted.reason)
            if error is None:
                self._keep({"outcome": "engaged", "attempt": attempt, "trace": wanted.trace})
                logger.warning("lockdown engaged at the gateway (attempt %d)", attempt)
                with self._lock:
                    queued = not self._wanted.empty()
                    self._status = CallerStatus(queued, 0, False, "", self._status.engaged + 1)
                return
            self._note_failure(wanted, attempt, error)
            if attempt < attempts and self._stopping.wait(delay):
                return
            delay = min(delay * 2, self.settings.retry_max_seconds)
        self._keep({"outcome": "gave-up", "attempts": attempts, "trace": wanted.trace})
        logger.error(
            "gave up engaging lockdown after %d attempts: the gateway is NOT locked "
            "down by this alert; engage it by hand (bin/qcstack lockdown engage)",
            attempts,
        )
        with self._lock:
            s = self._status
            self._status = CallerStatus(False, s.failures, True, s.last_error, s.engaged)

    def _note_failure(self, wanted: Wanted, attempt: int, error: str) -> None:
        self._keep({"outcome": "failed", "attempt": attempt, "error": error, "trace": wanted.trace})
        left = self.settings.retry_attempts - attempt
        logger.warning("lockdown call %d failed: %s; %d attempts left", attempt, error, left)
        with self._lock:
            self._status = CallerStatus(True, attempt, False, error, self._status.engaged)

    def _keep(self, call: Mapping[str, Any]) -> None:
        """Records one call's outcome; an audit log that fails must not stop the retries."""
        try:
            self._record({"event": "lockdown-call", **call})
        except Exception:
            logger.exception("cannot record a lockdown call in the audit log")

    def _call(self, reason: str) -> str | None:
        """One engage call; None when the gateway confirmed lockdown, else what went wrong."""
        url = urlsplit(self.settings.gateway_url)
        timeout = self.settings.call_timeout_seconds
        connection: http.client.HTTPConnection
        if url.scheme == "https":
            connection = http.client.HTTPSConnection(url.hostname or "", url.port, timeout=timeout)
        else:
            connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=timeout)
        body = json.dumps({"reason": reason}).encode()
        headers = {
            "Host": self.settings.gateway_host,
            "Authorization": "Bearer " + self._token.decode(),
            "Content-Type": "application/json",
            "Content-Length": str(len(body)),
        }
        started = time.monotonic()
        try:
            connection.request("POST", ENGAGE_PATH, body=body, headers=headers)
            response = connection.getresponse()
            answer = response.read(4096)
        except (OSError, http.client.HTTPException) as error:
            return f"{type(error).__name__}: {error}"[:300]
        finally:
            connection.close()
        if response.status == 200:
            try:
                if json.loads(answer).get("locked") is True:
                    return None
            except (ValueError, AttributeError):
                pass
            return "the gateway answered 200 without reporting lockdown engaged"
        elapsed = time.monotonic() - started
        text = answer.decode("utf-8", errors="replace")[:200]
        return f"HTTP {response.status} after {elapsed:.2f}s: {text}"
