"""What every /admin request passes first: a loopback Host, no cross-origin writes, a small body;
and the strict security headers on every answer."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.admin.pages import CONTENT_SECURITY_POLICY

SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-frame-options": "DENY",
    "cache-control": "no-store",
    "pragma": "no-cache",
    "x-content-type-options": "nosniff",
    # Not no-referrer: under it Chromium sends `Origin: null` with the pages' own form posts,
    # and the same-origin check could not tell them from an attacker's.
    "referrer-policy": "same-origin",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=(), payment=()",
}
SAFE_METHODS = frozenset({"GET", "HEAD"})
MAX_BODY_BYTES = 16 * 1024


def host_name(host: str) -> str:
    """The name part of a Host header: `127.0.0.1:8080` -> `127.0.0.1`, `[::1]:80` -> `[::1]`."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def cross_origin(headers: Headers) -> str | None:
    """Why a state-changing request comes from another site, or None when it does not."""
    fetch_site = headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site != "same-origin":
        return f"Sec-Fetch-Site is {fetch_site!r}"
    origin = headers.get("origin")
    if origin is not None:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or parts.netloc != headers.get("host", ""):
            return f"Origin {origin!r} is not this site"
    return None


class AdminGuard:
    """Refuses requests for other hosts (DNS rebinding), cross-origin writes and large bodies,
    and adds the security headers to every response of the admin app."""

    def __init__(self, app: ASGIApp, hosts: Iterable[str]) -> None:
        self.app = app
        self.hosts = frozenset(h.lower() for h in hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
            await send(message)

        problem = self.refusal(scope)
        if problem is not None:
            status, text = problem
            await PlainTextResponse(text, status_code=status)(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)

    def refusal(self, scope: Scope) -> tuple[int, str] | None:
        headers = Headers(scope=scope)
        if host_name(headers.get("host", "")) not in self.hosts:
            return 421, (
                "the admin pages answer only to "
                + ", ".join(sorted(self.hosts))
                + " (settings: gateway admin_hosts)"
            )
        if scope["method"] not in SAFE_METHODS:
            reason = cross_origin(headers)
            if reason:
                return 403, f"cross-origin request refused: {reason}"
            length = headers.get("content-length", "0")
            if "transfer-encoding" in headers:
                length = headers.get("content-length", "unstated")
            if not length.isdigit() or int(length) > MAX_BODY_BYTES:
                return 413, f"request body over {MAX_BODY_BYTES} bytes, or of no stated length"
        return None
