"""The Falco responder's workload, from the host as Falco's http_output comes: alerts POSTed to
its published loopback port, the gateway lockdown they engage (which the admin lifts), the bodies
it refuses, and its audit log read back by its own verifier in its container."""

from __future__ import annotations

import http.client
import json
import re
import time
from dataclasses import dataclass
from typing import Any

from responder.settings import ResponderSettings
from stack.seccomp import SeccompError, admin, log
from stack.seccomp.host import verify_audit_log
from stack.seccomp.stage import RECORD_RESPONDER_PORT, Running, Stage

ALERTS_PATH = "/alerts"
HOST = f"127.0.0.1:{RECORD_RESPONDER_PORT}"
LOCKDOWN_WAIT_SECONDS = 10.0  # DET-08 says within a second; a busy recording host gets slack


@dataclass(frozen=True)
class Alert:
    """One Falco alert as http_output posts it, and the action the responder must answer."""

    rule: str
    priority: str
    tags: tuple[str, ...]
    container: str
    action: str

    def body(self) -> bytes:
        fields = {
            "container.name": self.container,
            "container.id": "0123456789ab",
            "container.image.repository": "qcstack/qc-mcp",
            "proc.name": "sh",
            "proc.cmdline": "sh -c id",
            "user.uid": 10001,
        }
        return json.dumps(
            {
                "rule": self.rule,
                "priority": self.priority,
                "output": f"{self.rule} in {self.container} (qcrec drill)",
                "time": "2026-01-01T00:00:00.000000000Z",
                "source": "syscall",
                "hostname": "qcrec-host",
                "tags": list(self.tags),
                "output_fields": fields,
            }
        ).encode()


def qcstack_alert(rule: str, priority: str, det: str, container: str, action: str) -> Alert:
    return Alert(f"qcstack {rule}", priority, ("qcstack", det, "container"), container, action)


WARNING = qcstack_alert("write outside tmpfs", "Warning", "DET-02", "qcrec-target-1", "recorded")
CRITICAL = qcstack_alert("unexpected process", "Critical", "DET-01", "qcrec-target-1", "lockdown")
REPEATED = Alert(CRITICAL.rule, "Critical", CRITICAL.tags, CRITICAL.container, "suppressed")
UNTAGGED = Alert("qcrec rule of another ruleset", "Critical", ("container",), "qcrec-1", "recorded")
COLLECTOR_DOWN = qcstack_alert(
    "new listening socket", "Warning", "DET-07", "qcrec-target-2", "recorded"
)
GATEWAY_DOWN = qcstack_alert(
    "denied syscall attempted", "Critical", "DET-05", "qcrec-target-3", "lockdown"
)
AFTER_RESTART = qcstack_alert(
    "write outside tmpfs", "Warning", "DET-02", "qcrec-target-4", "recorded"
)


def post(alert: Alert) -> list[str]:
    """Posts one alert; the failures if the responder did not answer 200 with its action."""
    connection = http.client.HTTPConnection("127.0.0.1", RECORD_RESPONDER_PORT, timeout=30)
    try:
        headers = {"Content-Type": "application/json"}
        connection.request("POST", ALERTS_PATH, body=alert.body(), headers=headers)
        response = connection.getresponse()
        status, text = response.status, response.read().decode("utf-8", "replace")
    finally:
        connection.close()
    log(f"responder, {alert.priority} {alert.rule!r} {alert.tags}: {status} {text}")
    if status != 200 or json.loads(text).get("action") != alert.action:
        return [f"the responder answered {alert.rule!r}: {status} {text}, not {alert.action}"]
    return []


def health() -> dict[str, Any]:
    """The responder's GET /healthz (200 or 503 while a lockdown call is failing)."""
    connection = http.client.HTTPConnection("127.0.0.1", RECORD_RESPONDER_PORT, timeout=10)
    try:
        connection.request("GET", "/healthz")
        response = connection.getresponse()
        answer: dict[str, Any] = {"http": response.status, **json.loads(response.read())}
        return answer
    finally:
        connection.close()


def wait_for_lockdown(what: str, timeout: float = LOCKDOWN_WAIT_SECONDS) -> None:
    """Waits until the gateway's admin API shows lockdown engaged; then the admin lifts it."""
    started = time.monotonic()
    while not admin.ADMIN.call("GET", "/lockdown")["locked"]:
        if time.monotonic() - started > timeout:
            raise SeccompError(f"{what}: the gateway is not in lockdown after {timeout:.0f}s")
        time.sleep(0.1)
    log(f"{what}: the gateway in lockdown after {time.monotonic() - started:.2f}s")
    state = admin.ADMIN.call("POST", "/lockdown/lift")
    if state["locked"]:
        raise SeccompError(f"the admin did not lift the responder's lockdown: {state}")
    log(f"lockdown lifted by the admin; responder: {health()}")


def refused(max_body_bytes: int) -> list[tuple[str, bytes, int]]:
    """(what, raw request, the status the responder must answer) for bodies it refuses."""
    body = WARNING.body()
    too_large = b'{"rule": "%s"}' % (b"x" * max_body_bytes)
    as_json = {"Content-Type": "application/json"}

    def request(body: bytes, headers: dict[str, str] = as_json) -> bytes:
        return admin.http_request("POST", ALERTS_PATH, headers, body, host=HOST)

    return [
        ("not JSON", request(b'{"rule": '), 400),
        ("a wrong content type", request(body, {"Content-Type": "text/plain"}), 415),
        ("a stated length over the limit", request(too_large), 413),
        (
            "chunked past the limit",
            request(admin.chunked(too_large), {**as_json, "Transfer-Encoding": "chunked"}),
            413,
        ),
        ("a JSON array", request(b"[" + body + b"]"), 422),
        ("JSON that is no alert", request(b'{"hello": "qcrec"}'), 422),
        ("an unknown priority", request(body.replace(b'"Warning"', b'"Severe"')), 422),
    ]


def max_body_bytes(stage: Stage) -> int:
    default = ResponderSettings.model_fields["max_body_bytes"].default
    return int(stage.settings.responder.get("max_body_bytes", default))


def exercise(stage: Stage) -> list[str]:
    """Alerts of each kind and the refused bodies; returns the failures."""
    failures = post(WARNING)
    failures += post(CRITICAL)
    wait_for_lockdown("a qcstack Critical alert")
    # Suppressed, but the responder reads the gateway's state (GET /healthz) and, the admin
    # having lifted lockdown, engages it again.
    failures += post(REPEATED)
    wait_for_lockdown("the same alert again after the admin's lift")
    failures += post(UNTAGGED)
    time.sleep(1)  # the responder's lockdown calls run on a thread of their own
    if admin.ADMIN.call("GET", "/lockdown")["locked"]:
        failures.append("an untagged alert engaged the gateway's lockdown")
    for what, request, status in refused(max_body_bytes(stage)):
        line = admin.raw(request, port=RECORD_RESPONDER_PORT)
        ok = re.match(rf"HTTP/1\.[01] {status} ", line) is not None
        log(f"responder, {what}: {line!r}{'' if ok else f' (expected {status})'}")
        if not ok:
            failures.append(f"the responder answered {what} with {line!r}, not {status}")
    return failures


def alert_while_gateway_down() -> list[str]:
    """A Critical alert while the gateway is stopped: the responder answers at once and retries
    its lockdown call until the gateway is back (waited for here, until two calls failed)."""
    failures = post(GATEWAY_DOWN)
    deadline = time.monotonic() + 30
    state = health()
    while state["lockdown"]["failures"] < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
        state = health()
    log(f"responder while the gateway is down: {state}")
    if state["http"] != 503 or state["lockdown"]["failures"] < 2:
        failures.append(f"the responder's lockdown calls did not fail and retry: {state}")
    return failures


def check_audit(running: Running, more_than: int = 0) -> int:
    """The responder's audit chain is intact (its own verifier, in its container) and has grown
    past `more_than` entries; returns its length."""
    entries, said = verify_audit_log(running.responder, "responder")
    if entries <= more_than:
        raise SeccompError(f"the responder's audit log did not grow past {more_than}: {said}")
    return entries
