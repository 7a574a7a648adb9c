"""The /admin app: approval pages behind a login (session cookie, CSRF tokens) and the JSON admin
API behind HTTP Basic; the responder's token engages lockdown and opens nothing else."""

from __future__ import annotations

import asyncio
import base64
import binascii
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from gateway.admin import pages
from gateway.admin.guard import AdminGuard
from gateway.admin.sessions import LOGIN_COOKIE, SESSION_COOKIE, Session, Sessions
from gateway.admin.statistics import NoStatistics, StatisticsProvider
from gateway.admins import AdminAccess
from gateway.approvals import Approval, ApprovalError, ApprovalState
from gateway.audit import AuditError
from gateway.calls import Gate

PREFIX = pages.PREFIX
STATISTICS_TIMEOUT_SECONDS = 5.0
MAX_REASON_LENGTH = 500


@dataclass
class LoginThrottle:
    """At most `failures` failed logins in any `seconds`, for the pages and the API together:
    guessing passwords stays slow, and an admin who knows theirs waits out a burst at most."""

    failures: int = 10
    seconds: float = 60.0
    clock: Callable[[], float] = time.monotonic
    _seen: deque[float] = field(default_factory=deque, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def blocked(self) -> bool:
        now = self.clock()
        with self._lock:
            while self._seen and now - self._seen[0] >= self.seconds:
                self._seen.popleft()
            return len(self._seen) >= self.failures

    def failed(self) -> None:
        with self._lock:
            self._seen.append(self.clock())


class Refused(Exception):
    """Ends a request with this status and message (JSON for the API, a page for browsers)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Admin:
    """Everything the admin handlers use, built once with the gateway."""

    gate: Gate
    access: AdminAccess
    sessions: Sessions
    statistics: StatisticsProvider = field(default_factory=NoStatistics)
    throttle: LoginThrottle = field(default_factory=LoginThrottle)

    async def audit(self, entry: Mapping[str, Any]) -> None:
        """On disk before the decision is made; no audit, no decision."""
        try:
            await asyncio.to_thread(self.gate.audit.append, entry)
        except AuditError as error:
            raise Refused(503, f"audit log unavailable, nothing changed ({error})") from None

    async def approval(self, approval_id: str) -> Approval:
        try:
            return await asyncio.to_thread(self.gate.approvals.get, approval_id)
        except ApprovalError as error:
            raise Refused(404, str(error)) from None

    async def decide(self, approval_id: str, admin: str, verdict: str) -> Approval:
        held = await self.approval(approval_id)
        if held.state is not ApprovalState.PENDING:
            raise Refused(409, f"approval {approval_id} is already {held.state}")
        if verdict == "approve" and self.gate.lockdown.state().locked:
            raise Refused(409, "lockdown is engaged: nothing held can run until it is lifted")
        await self.audit(
            {"event": f"admin-{verdict}", "approval": approval_id, "tool": held.tool, "by": admin}
        )
        decide = self.gate.approvals.approve if verdict == "approve" else self.gate.approvals.deny
        try:
            return await asyncio.to_thread(decide, approval_id, admin)
        except ApprovalError as error:
            raise Refused(409, str(error)) from None

    def login(self, name: str, password: str) -> str | None:
        if self.throttle.blocked():
            raise Refused(429, "too many failed sign-ins; wait a minute and try again")
        admin = self.access.admins.authenticate(name, password)
        if admin is None:
            self.throttle.failed()
        return admin


# ---- the pages ----------------------------------------------------------------------------


def html(text: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(text, status_code=status)


def see(path: str) -> RedirectResponse:
    return RedirectResponse(PREFIX + path, status_code=303)


def admin_of(request: Request) -> Admin:
    admin: Admin = request.app.state.admin
    return admin


def session_of(request: Request) -> Session | None:
    return admin_of(request).sessions.find(request.cookies.get(SESSION_COOKIE))


async def form_of(request: Request) -> dict[str, str]:
    form = await request.form()
    return {key: value for key, value in form.items() if isinstance(value, str)}


PageHandler = Callable[[Request, Admin, Session], Awaitable[Response]]


def page(handler: PageHandler, *, writes: bool = False) -> Callable[[Request], Awaitable[Response]]:
    """A page for a signed-in admin; a write also needs the session's CSRF token."""

    async def endpoint(request: Request) -> Response:
        admin = admin_of(request)
        session = session_of(request)
        if session is None:
            if writes:
                return html(pages.message_page("Signed out", "Sign in again."), 403)
            return see("/login")
        if writes:
            form = await form_of(request)
            if not admin.sessions.csrf_ok(session, form.get("csrf", "")):
                text = "The form's CSRF token is missing or wrong: reload the page and try again."
                return html(pages.message_page("Refused", text), 403)
        try:
            return await handler(request, admin, session)
        except Refused as refused:
            csrf = admin.sessions.csrf_token(session)
            text = pages.message_page("Refused", refused.message, session.admin, csrf)
            return html(text, refused.status)

    return endpoint


async def login_form(request: Request) -> Response:
    if session_of(request) is not None:
        return see("/")
    return login_response(admin_of(request), "", 200)


def login_response(admin: Admin, error: str, status: int) -> Response:
    cookie, csrf = admin.sessions.login_form()
    response = html(pages.login_page(csrf, error), status)
    response.set_cookie(
        LOGIN_COOKIE, cookie, max_age=600, path=PREFIX, httponly=True, samesite="strict"
    )
    return response


async def login(request: Request) -> Response:
    admin = admin_of(request)
    form = await form_of(request)
    if not admin.sessions.login_form_ok(request.cookies.get(LOGIN_COOKIE), form.get("csrf", "")):
        return login_response(admin, "The sign-in form expired or was not ours; try again.", 403)
    try:
        name = admin.login(form.get("name", ""), form.get("password", ""))
        if name is None:
            await admin.audit({"event": "admin-login-failed", "by": form.get("name", "")[:64]})
            return login_response(admin, "Wrong admin name or password.", 401)
    except Refused as refused:
        return login_response(admin, refused.message, refused.status)
    _, cookie = admin.sessions.start(name)
    response = see("/")
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        max_age=int(admin.sessions.lifetime_seconds),
        path=PREFIX,
        httponly=True,
        samesite="strict",
    )
    response.delete_cookie(LOGIN_COOKIE, path=PREFIX, httponly=True, samesite="strict")
    return response


async def logout(request: Request, admin: Admin, session: Session) -> Response:
    admin.sessions.end(session)
    response = see("/login")
    response.delete_cookie(SESSION_COOKIE, path=PREFIX, httponly=True, samesite="strict")
    return response


async def held_calls(request: Request, admin: Admin, session: Session) -> Response:
    approvals = await asyncio.to_thread(admin.gate.approvals.all)
    csrf = admin.sessions.csrf_token(session)
    return html(pages.list_page(session.admin, csrf, approvals, admin.gate.lockdown.state()))


async def statistics_for(admin: Admin, approval: Approval) -> str:
    project = dict(pages.deployment_fields(approval)).get("Project", "")
    if not project.isdigit():
        return pages.statistics_section(None, "the call names no project")
    try:
        found = await asyncio.wait_for(
            admin.statistics.latest_backtest(int(project)), STATISTICS_TIMEOUT_SECONDS
        )
    except TimeoutError:
        return pages.statistics_section(None, f"no answer within {STATISTICS_TIMEOUT_SECONDS:g}s")
    except Exception as error:  # a page without statistics beats no page
        return pages.statistics_section(None, str(error)[:200] or type(error).__name__)
    return pages.statistics_section(found)


async def held_call(request: Request, admin: Admin, session: Session) -> Response:
    approval = await admin.approval(request.path_params["approval_id"])
    statistics = await statistics_for(admin, approval)
    csrf = admin.sessions.csrf_token(session)
    lockdown = admin.gate.lockdown.state()
    return html(pages.detail_page(session.admin, csrf, approval, lockdown, statistics))


def decision(verdict: str) -> PageHandler:
    async def decide(request: Request, admin: Admin, session: Session) -> Response:
        approval_id = request.path_params["approval_id"]
        await admin.decide(approval_id, session.admin, verdict)
        return see(f"/approvals/{approval_id}")

    return decide


# ---- the JSON API -------------------------------------------------------------------------

ApiHandler = Callable[[Request, Admin, str], Awaitable[Any]]


def basic_credentials(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    name, separator, password = decoded.partition(":")
    return (name, password) if separator else None


def bearer_token(request: Request) -> bytes | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip().encode() if scheme.lower() == "bearer" else None


def api(handler: ApiHandler, *, responder_may: bool = False) -> Callable[[Request], Any]:
    """An API endpoint for an admin (HTTP Basic); with responder_may, also for the responder's
    token. POSTs carry JSON, which a cross-site form cannot send."""

    async def endpoint(request: Request) -> Response:
        admin = admin_of(request)
        try:
            if request.method == "POST":
                kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
                if kind != "application/json":
                    raise Refused(415, "send the request body as application/json")
            who = authenticate(request, admin, responder_may=responder_may)
            return JSONResponse(await handler(request, admin, who))
        except Refused as refused:
            headers = {}
            if refused.status == 401:
                headers["www-authenticate"] = 'Basic realm="qcstack admin API", charset="UTF-8"'
            return JSONResponse({"error": refused.message}, refused.status, headers=headers)

    return endpoint


RESPONDER = "responder"


def authenticate(request: Request, admin: Admin, *, responder_may: bool) -> str:
    """The admin's name, or RESPONDER for the responder's token where it may act."""
    token = bearer_token(request)
    if token is not None:
        if not admin.access.is_responder(token):
            raise Refused(401, "unknown token: the admin API takes an admin's name:password")
        if not responder_may:
            raise Refused(403, "the responder's token can only engage lockdown")
        return RESPONDER
    credentials = basic_credentials(request)
    if credentials is None:
        raise Refused(401, "send an admin's name:password with HTTP Basic")
    name = admin.login(*credentials)
    if name is None:
        raise Refused(401, "wrong admin name or password")
    return name


async def json_body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json() if await request.body() else {}
    except ValueError:
        raise Refused(400, "the body is not JSON") from None
    if not isinstance(body, dict):
        raise Refused(400, "the body must be a JSON object")
    return body


async def api_approvals(request: Request, admin: Admin, who: str) -> Any:
    approvals = await asyncio.to_thread(admin.gate.approvals.all)
    state = request.query_params.get("state")
    return [pages.approval_json(a) for a in approvals if state in (None, str(a.state))]


async def api_approval(request: Request, admin: Admin, who: str) -> Any:
    return pages.approval_json(await admin.approval(request.path_params["approval_id"]))


def api_decision(verdict: str) -> ApiHandler:
    async def decide(request: Request, admin: Admin, who: str) -> Any:
        decided = await admin.decide(request.path_params["approval_id"], who, verdict)
        return pages.approval_json(decided)

    return decide


def lockdown_json(admin: Admin) -> dict[str, Any]:
    state = admin.gate.lockdown.state()
    return {"locked": state.locked, "by": state.by, "reason": state.reason, "since": state.since}


async def api_lockdown(request: Request, admin: Admin, who: str) -> Any:
    return lockdown_json(admin)


async def api_engage(request: Request, admin: Admin, who: str) -> Any:
    reason = str((await json_body(request)).get("reason") or "").strip()
    if not reason:
        raise Refused(400, 'say why: {"reason": "..."}')
    reason = reason[:MAX_REASON_LENGTH]
    await admin.audit({"event": "lockdown-engaged", "by": who, "reason": reason})
    await asyncio.to_thread(admin.gate.lockdown.engage, who, reason)
    return lockdown_json(admin)


async def api_lift(request: Request, admin: Admin, who: str) -> Any:
    await admin.audit({"event": "lockdown-lifted", "by": who})
    await asyncio.to_thread(admin.gate.lockdown.lift, who)
    return lockdown_json(admin)


def build_admin_app(admin: Admin, hosts: tuple[str, ...]) -> ASGIApp:
    """The app mounted at /admin; every path in it needs a login or an admin credential, but the
    login form itself."""
    held = "/approvals/{approval_id:str}"
    routes = [
        Route("/", page(held_calls), methods=["GET"]),
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", page(logout, writes=True), methods=["POST"]),
        Route(held, page(held_call), methods=["GET"]),
        Route(f"{held}/approve", page(decision("approve"), writes=True), methods=["POST"]),
        Route(f"{held}/deny", page(decision("deny"), writes=True), methods=["POST"]),
        Route("/api/approvals", api(api_approvals), methods=["GET"]),
        Route(f"/api{held}", api(api_approval), methods=["GET"]),
        Route(f"/api{held}/approve", api(api_decision("approve")), methods=["POST"]),
        Route(f"/api{held}/deny", api(api_decision("deny")), methods=["POST"]),
        Route("/api/lockdown", api(api_lockdown), methods=["GET"]),
        Route("/api/lockdown/engage", api(api_engage, responder_may=True), methods=["POST"]),
        Route("/api/lockdown/lift", api(api_lift), methods=["POST"]),
    ]
    app = Starlette(routes=routes)
    app.state.admin = admin
    return AdminGuard(app, hosts)
