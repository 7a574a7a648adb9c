"""The responder's two calls to the gateway: engage lockdown, and read whether it is engaged."""

from __future__ import annotations

import http.client
import json
import time
from urllib.parse import urlsplit

from responder.settings import ResponderSettings

ENGAGE_PATH = "/admin/api/lockdown/engage"
HEALTH_PATH = "/healthz"
"""The gateway's health check: unauthenticated, writes nothing, and says {"lockdown": bool}."""
ANSWER_BYTES = 4096
ERROR_CHARS = 300


class StateUnreadable(Exception):
    """The gateway did not say whether lockdown is engaged: no answer, an error, no such field."""


def connect(settings: ResponderSettings) -> http.client.HTTPConnection:
    url = urlsplit(settings.gateway_url)
    timeout = settings.call_timeout_seconds
    if url.scheme == "https":
        return http.client.HTTPSConnection(url.hostname or "", url.port, timeout=timeout)
    return http.client.HTTPConnection(url.hostname or "", url.port, timeout=timeout)


def engage(settings: ResponderSettings, token: bytes, reason: str) -> str | None:
    """One engage call; None when the gateway confirmed lockdown, else what went wrong."""
    connection = connect(settings)
    body = json.dumps({"reason": reason}).encode()
    headers = {
        "Host": settings.gateway_host,
        "Authorization": "Bearer " + token.decode(),
        "Content-Type": "application/json",
        "Content-Length": str(len(body)),
    }
    started = time.monotonic()
    try:
        connection.request("POST", ENGAGE_PATH, body=body, headers=headers)
        response = connection.getresponse()
        answer = response.read(ANSWER_BYTES)
    except (OSError, http.client.HTTPException) as error:
        return f"{type(error).__name__}: {error}"[:ERROR_CHARS]
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


def is_locked(settings: ResponderSettings) -> bool:
    """Whether the gateway says lockdown is engaged; StateUnreadable when it says nothing clear
    (the caller then engages: for a kill switch, an unknown state is an unlocked one)."""
    connection = connect(settings)
    try:
        connection.request("GET", HEALTH_PATH, headers={"Host": settings.gateway_host})
        response = connection.getresponse()
        answer = response.read(ANSWER_BYTES)
    except (OSError, http.client.HTTPException) as error:
        raise StateUnreadable(f"{type(error).__name__}: {error}"[:ERROR_CHARS]) from None
    finally:
        connection.close()
    if response.status != 200:
        text = answer.decode("utf-8", errors="replace")[:200]
        raise StateUnreadable(f"{HEALTH_PATH} answered HTTP {response.status}: {text}")
    try:
        locked = json.loads(answer).get("lockdown")
    except (ValueError, AttributeError):
        locked = None
    if not isinstance(locked, bool):
        raise StateUnreadable(f'{HEALTH_PATH} answered no "lockdown": true|false')
    return locked
