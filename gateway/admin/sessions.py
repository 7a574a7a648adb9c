"""Approval-page logins: signed, expiring session cookies held server-side, and the CSRF tokens
bound to them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

SESSION_COOKIE = "qcstack_admin"
LOGIN_COOKIE = "qcstack_admin_login"
LOGIN_FORM_SECONDS = 600.0
"""How long a login form stays usable."""


@dataclass(frozen=True)
class Session:
    id: str
    admin: str
    expires: float


def _sign(key: bytes, *parts: str) -> str:
    mac = hmac.new(key, "\x1f".join(parts).encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


class Sessions:
    """Live sessions in memory: a restart, a logout or the expiry time ends one. The signing key
    is made at start and never stored, so no cookie outlives the process that signed it."""

    def __init__(
        self,
        lifetime_seconds: float,
        clock: Callable[[], float] = time.time,
        key: bytes | None = None,
    ) -> None:
        self.lifetime_seconds = lifetime_seconds
        self.clock = clock
        self._key = key or secrets.token_bytes(32)
        self._live: dict[str, Session] = {}
        self._lock = threading.Lock()

    def start(self, admin: str) -> tuple[Session, str]:
        """A new session for `admin` and the cookie value that names it."""
        session = Session(secrets.token_urlsafe(24), admin, self.clock() + self.lifetime_seconds)
        with self._lock:
            now = self.clock()
            for expired in [s for s in self._live.values() if s.expires <= now]:
                del self._live[expired.id]
            self._live[session.id] = session
        expires = f"{session.expires:.0f}"
        return session, f"{session.id}.{expires}.{_sign(self._key, 'session', session.id, expires)}"

    def find(self, cookie: str | None) -> Session | None:
        """The live session a cookie names, or None when it is forged, expired or ended."""
        if not cookie:
            return None
        session_id, _, rest = cookie.partition(".")
        expires, _, signature = rest.partition(".")
        expected = _sign(self._key, "session", session_id, expires)
        if not hmac.compare_digest(signature.encode(), expected.encode()):
            return None
        with self._lock:
            session = self._live.get(session_id)
        if session is None or session.expires <= self.clock():
            return None
        return session

    def end(self, session: Session) -> None:
        with self._lock:
            self._live.pop(session.id, None)

    def csrf_token(self, session: Session) -> str:
        return _sign(self._key, "csrf", session.id)

    def csrf_ok(self, session: Session, token: str) -> bool:
        return hmac.compare_digest(token.encode(), self.csrf_token(session).encode())

    def login_form(self) -> tuple[str, str]:
        """A login form's cookie and its CSRF token (the form is a state-changing one too)."""
        nonce = secrets.token_urlsafe(18)
        expires = f"{self.clock() + LOGIN_FORM_SECONDS:.0f}"
        cookie = f"{nonce}.{expires}.{_sign(self._key, 'login', nonce, expires)}"
        return cookie, _sign(self._key, "login-csrf", nonce)

    def login_form_ok(self, cookie: str | None, token: str) -> bool:
        nonce, _, rest = (cookie or "").partition(".")
        expires, _, signature = rest.partition(".")
        expected = _sign(self._key, "login", nonce, expires)
        if not nonce or not hmac.compare_digest(signature.encode(), expected.encode()):
            return False
        if not expires.isdigit() or int(expires) <= self.clock():
            return False
        return hmac.compare_digest(token.encode(), _sign(self._key, "login-csrf", nonce).encode())
