"""The gateway's admin side as its people use it, from the host through the relay's published
loopback port with a plain HTTP client: the JSON admin API (an admin's HTTP Basic, the
responder's token), the approval pages (a login form with its CSRF token, the session cookie,
the decisions' forms), and requests the gateway must refuse, on /admin and on /mcp."""

from __future__ import annotations

import base64
import http.client
import json
import re
import socket
import subprocess
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any

from stack.seccomp import SeccompError, log
from stack.seccomp.host import HOST_ENVIRONMENT, docker
from stack.seccomp.services import GATEWAY_RELAY
from stack.seccomp.stage import (
    API_DOUBLE,
    GATEWAY_LIVE_CONTAINER,
    RECORD_GATEWAY_PORT,
    WORKLOAD_UID,
    Running,
    Stage,
    network,
)
from stack.seccomp.workload import workload_source
from stack.testdata import (
    CANARY_BROKERAGE_PASSWORD,
    TEST_ADMIN_NAME,
    TEST_ADMIN_PASSWORD,
    TEST_GATEWAY_TOKEN,
    TEST_RESPONDER_TOKEN,
)

HOST = "127.0.0.1"
ORIGIN = f"http://{HOST}:{RECORD_GATEWAY_PORT}"  # what a browser sends with the pages' forms
API = "/admin/api"
CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')
# In a URL's query string, where clients put tokens by mistake: the access log must not show it.
QUERY_CANARY = "qcrec-query-string-canary"


@dataclass(frozen=True)
class Answer:
    status: int
    body: str
    location: str = ""
    cookies: Mapping[str, str] = field(default_factory=dict)
    """Set-Cookie: name -> value ("" for a deleted one)."""

    def json(self) -> Any:
        return json.loads(self.body)


def send(
    method: str, path: str, headers: Mapping[str, str] | None = None, body: bytes | None = None
) -> Answer:
    """One request on a connection of its own to the published port."""
    connection = http.client.HTTPConnection(HOST, RECORD_GATEWAY_PORT, timeout=30)
    try:
        connection.request(method, path, body=body, headers=dict(headers or {}))
        response = connection.getresponse()
        text = response.read().decode("utf-8", "replace")
        cookies: dict[str, str] = {}
        for header in response.headers.get_all("set-cookie") or []:
            jar: SimpleCookie = SimpleCookie()
            jar.load(header)
            cookies.update({name: morsel.value for name, morsel in jar.items()})
        return Answer(response.status, text, response.getheader("location") or "", cookies)
    finally:
        connection.close()


def basic(name: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode("ascii")


def no_canary(what: str, text: str) -> None:
    if CANARY_BROKERAGE_PASSWORD in text:
        raise SeccompError(f"{what} shows the stored brokerage password: {text[:300]}")


@dataclass(frozen=True)
class AdminApi:
    """The JSON admin API with one credential (the Authorization header's value)."""

    authorization: str

    def call(self, method: str, path: str, body: Any = None, *, expect: int = 200) -> Any:
        headers = {"Authorization": self.authorization, "Accept": "application/json"}
        data = None
        if method == "POST":
            data = json.dumps({} if body is None else body).encode()
            headers["Content-Type"] = "application/json"
        answer = send(method, API + path, headers, data)
        if answer.status != expect:
            raise SeccompError(f"{method} {API}{path}: {answer.status} {answer.body[:300]}")
        no_canary(f"{method} {API}{path}", answer.body)
        return answer.json()


ADMIN = AdminApi(basic(TEST_ADMIN_NAME, TEST_ADMIN_PASSWORD))
RESPONDER = AdminApi(f"Bearer {TEST_RESPONDER_TOKEN}")


def pending(nodes: list[str], timeout: float = 60) -> dict[str, dict[str, Any]]:
    """node -> the pending approval of the create_live_algorithm call held for that node."""
    deadline = time.monotonic() + timeout
    found: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        approvals = ADMIN.call("GET", "/approvals?state=pending")
        found = {a["summary"]["Node"]: a for a in approvals if a["summary"]["Node"] in nodes}
        if len(found) == len(nodes):
            return found
        time.sleep(0.25)
    raise SeccompError(f"held within {timeout:.0f}s: {sorted(found)} of {nodes}")


def wait_for_state(approval_id: str, state: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        approval: dict[str, Any] = ADMIN.call("GET", f"/approvals/{approval_id}")
        if approval["state"] == state:
            return approval
        if time.monotonic() > deadline:
            raise SeccompError(f"approval {approval_id} is {approval['state']}, not {state}")
        time.sleep(0.25)


@dataclass
class Pages:
    """A person at the approval pages with a plain HTTP client: the cookies kept, each form's
    CSRF token read from the page it came in."""

    cookies: dict[str, str] = field(default_factory=dict)

    def request(
        self, method: str, path: str, form: Mapping[str, str] | None = None, **more: str
    ) -> Answer:
        headers = {"Accept": "text/html", **more}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form).encode()
            headers.setdefault("Origin", ORIGIN)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        answer = send(method, path, headers, body)
        for name, value in answer.cookies.items():
            if value:
                self.cookies[name] = value
            else:
                self.cookies.pop(name, None)
        no_canary(f"{method} {path}", answer.body)
        return answer

    def expect(self, answer: Answer, what: str, status: int, location: str = "") -> Answer:
        if answer.status != status or not answer.location.endswith(location):
            raise SeccompError(
                f"{what}: {answer.status} {answer.location} {answer.body[:300]}; expected "
                f"{status} {location}"
            )
        return answer

    def csrf(self, answer: Answer) -> str:
        match = CSRF_FIELD.search(answer.body)
        if match is None:
            raise SeccompError(f"no CSRF token in the page: {answer.body[:300]}")
        return match.group(1)

    def sign_in(self) -> None:
        """Sent to the login form, a wrong password first (401, a new form), then the right one."""
        self.expect(self.request("GET", "/admin/"), "the list, signed out", 303, "/admin/login")
        form = self.expect(self.request("GET", "/admin/login"), "the login form", 200)
        wrong = {"csrf": self.csrf(form), "name": TEST_ADMIN_NAME, "password": "qcrec-wrong-pw"}
        form = self.expect(self.request("POST", "/admin/login", wrong), "a wrong password", 401)
        right = {**wrong, "csrf": self.csrf(form), "password": TEST_ADMIN_PASSWORD}
        self.expect(self.request("POST", "/admin/login", right), "signing in", 303, "/admin/")

    def held_calls(self, *words: str) -> Answer:
        page = self.expect(self.request("GET", "/admin/"), "the held calls", 200)
        missing = [word for word in words if word not in page.body]
        if missing:
            raise SeccompError(f"the held calls page lacks {missing}: {page.body[:500]}")
        return page

    def decide(self, approval_id: str, verdict: str) -> None:
        """The held call's page (with the project's latest backtest), a form post with a stale
        CSRF token (refused), then the decision, and the page again."""
        path = f"/admin/approvals/{approval_id}"
        page = self.expect(self.request("GET", path), "the held call's page", 200)
        if "Latest backtest" not in page.body or "InteractiveBrokersBrokerage" not in page.body:
            raise SeccompError(f"the held call's page lacks its details: {page.body[:500]}")
        stale = {"csrf": "qcrec-stale-token", "decision": verdict}
        self.expect(self.request("POST", f"{path}/{verdict}", stale), "a stale CSRF token", 403)
        form = {"csrf": self.csrf(page), "decision": verdict}
        self.expect(self.request("POST", f"{path}/{verdict}", form), verdict, 303, path)
        self.expect(self.request("GET", path), "the decided call's page", 200)

    def sign_out(self) -> None:
        page = self.held_calls()
        self.expect(
            self.request("POST", "/admin/logout", {"csrf": self.csrf(page)}),
            "signing out",
            303,
            "/admin/login",
        )
        self.expect(self.request("GET", "/admin/"), "the list, signed out", 303, "/admin/login")


def raw(request: bytes, send_first: int | None = None, port: int = RECORD_GATEWAY_PORT) -> str:
    """A request written to a socket on a published port (the gateway's unless given) as is (the
    part up to send_first only, if given); the status line of the answer, or the error."""
    try:
        with socket.create_connection((HOST, port), timeout=30) as connection:
            try:
                connection.sendall(request if send_first is None else request[:send_first])
            except OSError as error:  # the gateway answered and closed before the end
                log(f"  (sending stopped early: {error!r})")
            reply = b""
            while b"\r\n" not in reply:
                chunk = connection.recv(4096)
                if not chunk:
                    break
                reply += chunk
            return reply.split(b"\r\n")[0].decode("latin-1") or "closed without an answer"
    except OSError as error:
        return f"error: {error!r}"


def http_request(
    method: str, path: str, headers: Mapping[str, str], body: bytes = b"", host: str = ""
) -> bytes:
    """An HTTP/1.1 request as bytes: Host the published port unless given, a Content-Length
    unless the headers say how the body is framed."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host or f'{HOST}:{RECORD_GATEWAY_PORT}'}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if "Transfer-Encoding" not in headers and "Content-Length" not in headers:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def chunked(body: bytes, size: int = 65536) -> bytes:
    parts = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in parts) + b"0\r\n\r\n"


@dataclass(frozen=True)
class Refused:
    """A request the gateway must refuse with `status`; only `send_first` bytes of it are sent
    when given (a client that stops once it has its answer)."""

    what: str
    request: bytes
    status: int
    send_first: int | None = None


def refused_requests(max_request_bytes: int) -> list[Refused]:
    """Malformed MCP requests with the bearer token, and admin requests the gateway refuses."""
    token = {"Authorization": f"Bearer {TEST_GATEWAY_TOKEN}", "Accept": "application/json"}
    mcp = {**token, "Content-Type": "application/json"}
    ping = b'{"jsonrpc": "2.0", "id": 1, "method": "ping"}'
    too_large = b'{"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"pad": "%s"}}' % (
        b"x" * max_request_bytes
    )
    responder = {
        "Authorization": f"Bearer {TEST_RESPONDER_TOKEN}",
        "Origin": ORIGIN,
        "Content-Type": "application/json",
    }
    agent = {**responder, "Authorization": f"Bearer {TEST_GATEWAY_TOKEN}"}
    admin = {"Authorization": ADMIN.authorization}
    wrong = {"Authorization": basic(TEST_ADMIN_NAME, "qcrec-wrong-password")}
    engage = f"{API}/lockdown/engage"
    reason = b'{"reason": "qcrec"}'
    form = {
        "Origin": "http://qcrec-attacker.invalid",
        "Content-Type": "application/x-www-form-urlencoded",
    }

    def post(path: str, headers: Mapping[str, str], body: bytes) -> bytes:
        return http_request("POST", path, headers, body)

    return [
        Refused(
            "MCP, wrong content type",
            post("/mcp", {**mcp, "Content-Type": "text/plain"}, ping),
            415,
        ),
        Refused("MCP, not JSON", post("/mcp", mcp, b'{"jsonrpc": "2.0", "id": '), 400),
        Refused("MCP, JSON nested too deep", post("/mcp", mcp, b"[" * 64 + b"]" * 64), 400),
        Refused("MCP, JSON but not JSON-RPC", post("/mcp", mcp, b'{"hello": "qcrec"}'), 400),
        Refused("MCP, a stated length over the limit", post("/mcp", mcp, too_large), 413, 4096),
        Refused(
            "MCP, chunked past the limit",
            post("/mcp", {**mcp, "Transfer-Encoding": "chunked"}, chunked(too_large)),
            413,
        ),
        Refused(
            "MCP, the token in the query string",
            post(f"/mcp?token={QUERY_CANARY}", {"Content-Type": "application/json"}, ping),
            401,
        ),
        Refused(
            "admin API, wrong content type",
            post(engage, {**responder, "Content-Type": "text/plain"}, reason),
            415,
        ),
        Refused("admin API, not JSON", post(engage, responder, b'{"reason": '), 400),
        Refused("admin API, no reason", post(engage, responder, b"{}"), 400),
        Refused(
            "admin API, a body over 16 KiB",
            post(engage, responder, b'{"reason": "%s"}' % (b"x" * 20000)),
            413,
        ),
        Refused("admin API, the agent's bearer token", post(engage, agent, reason), 401),
        Refused(
            "admin API, the responder's token to lift",
            post(f"{API}/lockdown/lift", responder, b"{}"),
            403,
        ),
        Refused("admin API, no credential", http_request("GET", f"{API}/approvals", {}), 401),
        Refused("admin API, a wrong password", http_request("GET", f"{API}/approvals", wrong), 401),
        Refused(
            "admin API, an unknown approval",
            http_request("GET", f"{API}/approvals/qcrec-none", admin),
            404,
        ),
        Refused(
            "admin API, another Host (DNS rebinding)",
            http_request("GET", f"{API}/lockdown", admin, host="qcrec-rebind.invalid"),
            421,
        ),
        Refused(
            "approval pages, a cross-origin form",
            post("/admin/login", form, b"csrf=x&name=x&password=x"),
            403,
        ),
    ]


def send_refused_requests(max_request_bytes: int) -> list[str]:
    """Sends each of refused_requests; returns the failures."""
    failures = []
    for refused in refused_requests(max_request_bytes):
        line = raw(refused.request, refused.send_first)
        ok = re.match(rf"HTTP/1\.[01] {refused.status} ", line) is not None
        log(f"gateway, {refused.what}: {line!r}{'' if ok else f' (expected {refused.status})'}")
        if not ok:
            failures.append(
                f"the gateway answered {refused.what} with {line!r}, not {refused.status}"
            )
    return failures


# ---- the held live deployments ------------------------------------------------------------

LIVE_DEPLOY_ID = "L-141106d80de1da9a9f85ea07c06bf7b6"  # the API double's answer to /live/create
IB = "InteractiveBrokersBrokerage"  # the brokerage of the store's configuration ib-canary
GATEWAY_RELAY_URL = ("front", f"http://{GATEWAY_RELAY.name}:8080/mcp")  # as the agents' clients


def start_deployments(stage: Stage, nodes: list[str]) -> subprocess.Popen[str]:
    """The agent's create_live_algorithm calls, one per node, through the relay in a container
    of our own (workload/gateway_live.py), in the background: the gateway holds each one."""
    network_name, url = GATEWAY_RELAY_URL
    return subprocess.Popen(
        [
            "docker", "run", "--rm", "--name", GATEWAY_LIVE_CONTAINER,
            "--network", network(network_name), "--user", f"{WORKLOAD_UID}:{WORKLOAD_UID}",
            "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
            "--entrypoint", "/usr/bin/python3", stage.image,
            "-c", workload_source("gateway_live"), url, TEST_GATEWAY_TOKEN, json.dumps(nodes),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=HOST_ENVIRONMENT,
    )  # fmt: skip


def finish_deployments(client: subprocess.Popen[str]) -> dict[str, tuple[str, str]]:
    """node -> (ok | error | exception, the answer's text), once every call has ended."""
    out, err = client.communicate(timeout=300)
    if client.returncode != 0:
        raise SeccompError(f"the live deployments' client failed ({client.returncode}): {err}")
    results = {node: (status, text) for node, status, text in json.loads(out.splitlines()[-1])}
    for node, (status, text) in results.items():
        log(f"  create_live_algorithm on {node}: {status}: {text[:160]}")
        no_canary(f"the answer to the deployment on {node}", text)
    return results


def expect_outcome(results: Mapping[str, tuple[str, str]], node: str, ok: bool, words: str) -> None:
    status, text = results[node]
    if (status == "ok") != ok or words not in text:
        raise SeccompError(
            f"the deployment on {node}: {status}: {text[:300]}; expected "
            f"{'ok' if ok else 'a refusal'} with {words!r}"
        )


def held(nodes: list[str]) -> dict[str, str]:
    """node -> the id of its pending approval, each checked as the admin API shows it."""
    found = pending(nodes)
    for node, approval in found.items():
        summary = approval["summary"]
        if approval["tool"] != "create_live_algorithm" or summary["Brokerage"] != IB:
            raise SeccompError(f"the approval held for {node} is not the deployment: {approval}")
    log(f"held for approval: { {node: a['id'] for node, a in found.items()} }")
    return {node: approval["id"] for node, approval in found.items()}


def live_creations(running: Running) -> list[str]:
    """The bodies of the /live/create requests the API double received."""
    done = docker("logs", running.containers[API_DOUBLE])
    bodies = []
    for line in (done.stdout + done.stderr).splitlines():
        try:
            record = json.loads(line).get("qc_api_double") or {}
        except ValueError:
            continue
        if str(record.get("path", "")).endswith("/live/create"):
            bodies.append(str(record.get("body", "")))
    return bodies


def deploy_with_upstream_down(stage: Stage) -> None:
    """Phase 1: a held deployment approved through the admin API while the QuantConnect API is
    unreachable: qc-mcp's call fails at the proxy, and the gateway's answer keeps the brokerage
    settings it filled in to itself."""
    node = "LN-qcrec-upstream-down"
    client = start_deployments(stage, [node])
    try:
        approval = held([node])[node]
        decided = ADMIN.call("POST", f"/approvals/{approval}/approve")
        log(f"approved through the admin API: {decided['id']} by {decided['decided_by']}")
    except BaseException:
        client.kill()
        raise
    results = finish_deployments(client)
    if results[node][0] == "ok":
        raise SeccompError(f"the deployment succeeded with the upstream down: {results}")


def deploy_with_approvals(
    stage: Stage, running: Running, locked_session: Callable[[], object]
) -> None:
    """Phase 2: four held deployments. One approved through the admin API, one through the
    approval pages (login form, session cookie, CSRF tokens), one denied through the API; then
    lockdown engaged with the responder's token (an approval is refused meanwhile, and
    `locked_session` runs an agent's session), lifted by the admin, and the last call denied on
    its page. The two approved ones reach the API double with the stored settings filled in."""
    nodes = {verdict: f"LN-qcrec-{verdict}" for verdict in ("api", "page", "deny", "lockdown")}
    before = len(live_creations(running))
    client = start_deployments(stage, list(nodes.values()))
    try:
        approvals = held(list(nodes.values()))
        ids = {verdict: approvals[node] for verdict, node in nodes.items()}
        ADMIN.call("GET", f"/approvals/{ids['api']}")
        decided = ADMIN.call("POST", f"/approvals/{ids['api']}/approve")
        log(f"approved through the admin API: {decided['id']} by {decided['decided_by']}")
        pages = Pages()
        pages.sign_in()
        pages.held_calls(ids["page"], ids["deny"], ids["lockdown"])
        pages.decide(ids["page"], "approve")
        log(f"approved on its page: {ids['page']}")
        decided = ADMIN.call("POST", f"/approvals/{ids['deny']}/deny")
        log(f"denied through the admin API: {decided['id']} by {decided['decided_by']}")
        for verdict in ("api", "page"):
            wait_for_state(ids[verdict], "used")
        state = RESPONDER.call("POST", "/lockdown/engage", {"reason": "qcrec: a responder's drill"})
        log(f"lockdown engaged with the responder's token: {state}")
        if not state["locked"]:
            raise SeccompError(f"the responder's token did not engage lockdown: {state}")
        ADMIN.call("POST", f"/approvals/{ids['lockdown']}/approve", expect=409)
        pages.held_calls("Lockdown")
        locked_session()
        state = ADMIN.call("POST", "/lockdown/lift")
        log(f"lockdown lifted by the admin: {state}")
        if state["locked"] or ADMIN.call("GET", "/lockdown")["locked"]:
            raise SeccompError(f"the admin did not lift lockdown: {state}")
        pages.decide(ids["lockdown"], "deny")
        pages.sign_out()
    except BaseException:
        client.kill()
        raise
    results = finish_deployments(client)
    expect_outcome(results, nodes["api"], True, LIVE_DEPLOY_ID)
    expect_outcome(results, nodes["page"], True, LIVE_DEPLOY_ID)
    expect_outcome(results, nodes["deny"], False, "denied")
    expect_outcome(results, nodes["lockdown"], False, "denied")
    created = live_creations(running)[before:]
    filled = [body for body in created if CANARY_BROKERAGE_PASSWORD in body]
    log(f"the API double received {len(created)} live deployments, {len(filled)} filled in")
    if len(created) != 2 or len(filled) != 2:
        raise SeccompError(f"expected 2 deployments with the stored settings, got {created}")
