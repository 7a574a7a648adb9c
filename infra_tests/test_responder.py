"""DET-08: the Falco alert responder. Alerts in Falco's documented JSON format (json_output, as
http_output posts them) go from the host to the responder's loopback port; a qcstack Critical
alert engages lockdown through the real gateway within a second (and a repeat of it does again
after an admin's lift), others are recorded only, bad input is refused and still recorded. No
Falco binary exists here: the tests post what Falco would."""

from __future__ import annotations

import hashlib
import json
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from infra_tests.conftest import (
    RESPONDER_STATE,
    Container,
    gateway_audit,
    responder_audit,
    stack_container,
    stack_network,
)
from infra_tests.dockerhost import DockerHost
from infra_tests.test_tracing import wait_for_spans
from stack.admin_api import AdminApi
from stack.settings import Settings
from stack.testdata import TEST_ADMIN_NAME, TEST_ADMIN_PASSWORD, TEST_RESPONDER_TOKEN

SERVICE = "falco-responder"
LOCKDOWN_SECONDS = 1.0
"""DET-08: lockdown engaged within this long of the alert's POST."""
DEADLINE_SECONDS = 30.0
"""The bound of every other wait here."""


def falco_alert(priority: str, *, tags: tuple[str, ...] = ("qcstack", "DET-01")) -> dict[str, Any]:
    """One alert as Falco's json_output writes it; a container of its own per alert, so the
    responder's repeat suppression (same rule and container) never joins two tests' alerts."""
    container = f"qcstack-test-{secrets.token_hex(6)}"
    return {
        "hostname": "qcstack-test-host",
        "output": f"10:20:05.408091526: {priority} unexpected process in {container} (proc=sh)",
        "output_fields": {
            "container.id": secrets.token_hex(6),
            "container.name": container,
            "container.image.repository": "qcstack/qc-mcp",
            "evt.time.iso8601": "2026-12-06T10:20:05.408091526Z",
            "proc.name": "sh",
            "proc.cmdline": "sh -c id",
            "user.uid": 10001,
        },
        "priority": priority,
        "rule": "qcstack unexpected process",
        "source": "syscall",
        "tags": list(tags),
        "time": "2026-12-06T10:20:05.408091526Z",
        "uuid": "5b9b6a8e-4a57-4a0b-9a43-9b0b4e0c1a7d",
    }


def post(url: str, body: bytes, content_type: str = "application/json") -> tuple[int, Any]:
    request = urllib.request.Request(  # noqa: S310 -- the test stack's loopback port
        f"{url}/alerts", data=body, headers={"Content-Type": content_type}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def health(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=10) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


@pytest.fixture(scope="module")
def responder(docker: DockerHost, project: str) -> Container:
    return stack_container(docker, project, SERVICE)


@pytest.fixture(scope="module")
def responder_url(settings: Settings, is_local: bool) -> str:
    if not is_local:
        pytest.skip(
            "these tests post alerts from the controller, and a deployed VM's responder port is "
            "on the VM's loopback alone, with SSH forwarding off (HOST-01)"
        )
    return f"http://127.0.0.1:{settings.test_responder_port}"


@pytest.fixture(scope="module")
def admin(settings: Settings, is_local: bool) -> AdminApi:
    """The gateway's admin API through the relay's loopback port, as the test admin."""
    if not is_local:
        pytest.skip("the gateway's admin port is on a deployed VM's loopback alone (NET-01)")
    base = f"http://127.0.0.1:{settings.test_gateway_port}/admin/api"
    return AdminApi(base, TEST_ADMIN_NAME, TEST_ADMIN_PASSWORD)


@pytest.fixture
def unlocked(admin: AdminApi) -> Iterator[AdminApi]:
    """The gateway out of lockdown before the test, and lifted again after it whatever happens,
    so no other suite finds it locked."""
    admin.post("/lockdown/lift")
    try:
        yield admin
    finally:
        admin.post("/lockdown/lift")


def running_settings(docker: DockerHost, responder: Container) -> dict[str, Any]:
    """The settings the running responder reads, from its own settings class, in its container."""
    source = "from responder.settings import ResponderSettings as S; print(S().model_dump_json())"
    return dict(
        json.loads(docker.check("docker exec %s /usr/bin/python3 -c %s", responder.id, source))
    )


def wait_for(condition: Any, seconds: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + seconds
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(step)


@pytest.mark.control("DET-08", "config")
def test_running_responder_locks_down_from_critical_through_the_gateway(
    docker: DockerHost, responder: Container
) -> None:
    running = running_settings(docker, responder)
    assert running["lockdown_priority"] == 5, (
        "lockdown_priority is not Critical"
    )  # Priority.CRITICAL
    assert running["lockdown_tag"] == "qcstack"
    assert running["gateway_url"] == "http://gateway:8080"
    assert running["otel_endpoint"] == "http://otel-collector:4318/v1/traces"
    assert running["token_file"] == "/run/secrets/responder_token"  # noqa: S105 -- a path


@pytest.mark.control("DET-08", "config")
def test_responder_token_is_its_own_file_with_the_gateways_value(
    docker: DockerHost, responder: Container, project: str
) -> None:
    mounts = {m["Destination"]: m for m in responder.attrs["Mounts"]}
    mount = mounts["/run/secrets/responder_token"]
    assert mount["RW"] is False
    own = docker.host.file(mount["Source"])
    assert (own.uid, own.mode) == (10007, 0o400)
    gateway = stack_container(docker, project, "gateway")
    theirs = {m["Destination"]: m for m in gateway.attrs["Mounts"]}
    source = docker.host.file(theirs["/run/secrets/gateway_responder_token"]["Source"])
    assert own.sha256sum == source.sha256sum, "the two copies of the responder token differ"
    state = mounts[RESPONDER_STATE]
    assert (state["Type"], state["RW"]) == ("volume", True)


@pytest.mark.control("DET-08", "config")
def test_responder_reaches_the_gateway_and_collector_and_is_published_on_loopback_only(
    docker: DockerHost, responder: Container, project: str, settings: Settings
) -> None:
    networks = sorted(responder.attrs["NetworkSettings"]["Networks"])
    assert networks == [stack_network(project, n) for n in ("alerts", "door", "telemetry")]
    alerts = docker.inspect("network", stack_network(project, "alerts"))
    assert alerts["Options"].get("com.docker.network.bridge.enable_ip_masquerade") == "false"
    for internal in ("door", "telemetry"):
        assert docker.inspect("network", stack_network(project, internal))["Internal"] is True
    assert responder.host_config["PortBindings"] == {
        "8765/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(settings.test_responder_port)}]
    }


@pytest.mark.control("DET-08", "behaviour")
def test_critical_qcstack_alert_locks_the_gateway_down_within_a_second(
    docker: DockerHost, responder: Container, responder_url: str, unlocked: AdminApi
) -> None:
    alert = falco_alert("Critical")
    started = time.monotonic()
    status, answer = post(responder_url, json.dumps(alert).encode())
    assert (status, answer["action"]) == (200, "lockdown")
    engaged = wait_for(lambda: unlocked.get("/lockdown")["locked"], LOCKDOWN_SECONDS)
    elapsed = time.monotonic() - started
    assert engaged, f"lockdown not engaged {LOCKDOWN_SECONDS} s after the alert"
    state = unlocked.get("/lockdown")
    assert state["by"] == "responder" and alert["rule"] in state["reason"], state
    entry = next(e for e in responder_audit(docker, responder) if e["seq"] == answer["seq"])
    assert entry["event"] == "falco-alert" and entry["action"] == "lockdown"
    assert entry["rule"] == alert["rule"] and entry["priority"] == "Critical"
    assert entry["container"] == alert["output_fields"]["container.name"]
    assert entry["trace"], "the alert's audit entry names no trace"
    print(f"lockdown engaged {elapsed:.3f} s after the alert")


@pytest.mark.control("DET-08", "behaviour")
@pytest.mark.parametrize(
    ("priority", "tags"),
    [("Warning", ("qcstack", "DET-02")), ("Critical", ("container", "mitre_execution"))],
    ids=["qcstack-warning", "critical-not-qcstack"],
)
def test_alert_below_the_threshold_or_not_qcstacks_is_recorded_only(
    docker: DockerHost,
    responder: Container,
    responder_url: str,
    unlocked: AdminApi,
    priority: str,
    tags: tuple[str, ...],
) -> None:
    status, answer = post(responder_url, json.dumps(falco_alert(priority, tags=tags)).encode())
    assert (status, answer["action"]) == (200, "recorded")
    assert not wait_for(lambda: unlocked.get("/lockdown")["locked"], LOCKDOWN_SECONDS)
    entry = next(e for e in responder_audit(docker, responder) if e["seq"] == answer["seq"])
    assert (entry["action"], entry["priority"], entry["tags"]) == ("recorded", priority, list(tags))


def lock_down_by(responder_url: str, admin: AdminApi, body: bytes) -> None:
    """Posts an alert that engages lockdown and waits until it is engaged and its call recorded,
    so what a repeat of it does comes after."""
    assert post(responder_url, body)[1]["action"] == "lockdown"
    assert wait_for(lambda: admin.get("/lockdown")["locked"], LOCKDOWN_SECONDS)
    assert wait_for(lambda: not health(responder_url)[1]["lockdown"]["pending"], DEADLINE_SECONDS)


def entries_since(docker: DockerHost, responder: Container, seq: int) -> list[dict[str, Any]]:
    return [e for e in responder_audit(docker, responder) if e["seq"] >= seq]


@pytest.mark.control("DET-08", "behaviour")
def test_a_repeat_after_an_admin_lift_locks_the_gateway_down_again_within_a_second(
    docker: DockerHost, responder: Container, responder_url: str, unlocked: AdminApi
) -> None:
    alert = falco_alert("Critical")
    body = json.dumps(alert).encode()
    lock_down_by(responder_url, unlocked, body)
    assert unlocked.post("/lockdown/lift")["locked"] is False
    started = time.monotonic()
    status, answer = post(responder_url, body)  # the same alert, within suppress_seconds
    assert (status, answer["action"], answer["lockdown_check"]) == (200, "suppressed", True)
    engaged = wait_for(lambda: unlocked.get("/lockdown")["locked"], LOCKDOWN_SECONDS)
    elapsed = time.monotonic() - started
    assert engaged, f"lockdown not engaged again {LOCKDOWN_SECONDS} s after the repeat"
    state = unlocked.get("/lockdown")
    assert state["by"] == "responder" and alert["rule"] in state["reason"], state
    seq = answer["seq"]

    def recorded() -> bool:
        return any(e["event"] == "lockdown-call" for e in entries_since(docker, responder, seq))

    assert wait_for(recorded, DEADLINE_SECONDS, 0.2)
    repeat, check, call = entries_since(docker, responder, seq)[:3]
    assert (repeat["action"], repeat["lockdown_check"]) == ("suppressed", True)
    assert (check["event"], check["state"]) == ("lockdown-check", "not-locked")
    assert (call["event"], call["outcome"]) == ("lockdown-call", "engaged")
    assert repeat["trace"] and repeat["trace"] == check["trace"] == call["trace"]
    print(f"lockdown engaged again {elapsed:.3f} s after the repeat")


@pytest.mark.control("DET-08", "behaviour")
def test_a_repeat_while_locked_down_reads_the_gateways_state_and_engages_nothing(
    docker: DockerHost,
    responder: Container,
    responder_url: str,
    unlocked: AdminApi,
    project: str,
) -> None:
    body = json.dumps(falco_alert("Critical")).encode()
    lock_down_by(responder_url, unlocked, body)
    locked = unlocked.get("/lockdown")
    gateway = stack_container(docker, project, "gateway")
    engaged = [e for e in gateway_audit(docker, gateway) if e["event"] == "lockdown-engaged"]
    status, answer = post(responder_url, body)
    assert (status, answer["action"], answer["lockdown_check"]) == (200, "suppressed", True)
    seq = answer["seq"]
    assert wait_for(lambda: len(entries_since(docker, responder, seq)) >= 2, DEADLINE_SECONDS, 0.2)
    # The check's entry comes before any engage call it makes: give one time to come.
    time.sleep(LOCKDOWN_SECONDS)
    repeat, check, *more = entries_since(docker, responder, seq)
    assert (repeat["action"], repeat["lockdown_check"]) == ("suppressed", True)
    assert (check["event"], check["state"]) == ("lockdown-check", "locked")
    assert not [e for e in more if e["event"] == "lockdown-call"], "an engage call for the repeat"
    assert unlocked.get("/lockdown") == locked  # not engaged over again: same reason and time
    again = [e for e in gateway_audit(docker, gateway) if e["event"] == "lockdown-engaged"]
    assert again == engaged, "the repeat wrote a lockdown-engaged entry at the gateway"


MALFORMED = {
    "not-json": (b"{this is not json", "application/json", 400),
    "wrong-content-type": (json.dumps(falco_alert("Critical")).encode(), "text/plain", 415),
    "too-big": (b'{"output": "' + b"A" * (300 * 1024) + b'"}', "application/json", 413),
    "not-an-object": (b'["rule", "priority"]', "application/json", 422),
    "no-rule": (b'{"priority": "Critical", "output": "x"}', "application/json", 422),
    "unknown-priority": (
        json.dumps({**falco_alert("Critical"), "priority": "Severe"}).encode(),
        "application/json",
        422,
    ),
    "control-characters": (b"\x1b[2J\x00\nFAKE audit line\r\n", "application/json", 400),
}


@pytest.mark.control("DET-08", "behaviour")
@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_alert_is_refused_and_still_recorded(
    docker: DockerHost, responder: Container, responder_url: str, unlocked: AdminApi, case: str
) -> None:
    body, content_type, expected = MALFORMED[case]
    before = len(responder_audit(docker, responder))
    status, answer = post(responder_url, body, content_type)
    assert status == expected and answer["error"] and answer["recorded"] is True
    (entry,) = responder_audit(docker, responder)[before:]
    assert entry["event"] == "falco-alert-rejected" and entry["status"] == expected
    assert entry["bytes"] == len(body)
    assert entry["sha256"] == hashlib.sha256(body[: entry["sha256_bytes"]]).hexdigest()
    assert len(entry["excerpt"]) <= 160
    assert all(c.isascii() and c.isprintable() for c in entry["excerpt"])
    assert unlocked.get("/lockdown")["locked"] is False


@pytest.mark.control("DET-08", "behaviour")
def test_unreachable_gateway_is_retried_reported_and_then_locked_down(
    docker: DockerHost,
    responder: Container,
    responder_url: str,
    unlocked: AdminApi,
    project: str,
) -> None:
    # Both networks it shares with the gateway (its spans' one too) are cut.
    shared = [stack_network(project, name) for name in ("door", "telemetry")]
    for network in shared:
        docker.check("docker network disconnect %s %s", network, responder.id)
    try:
        started = len(responder_audit(docker, responder))
        assert post(responder_url, json.dumps(falco_alert("Critical")).encode())[0] == 200
        assert wait_for(lambda: health(responder_url)[0] == 503, DEADLINE_SECONDS, 0.2)
        report = health(responder_url)[1]["lockdown"]
        assert report["pending"] is True and report["failures"] >= 1 and report["last_error"]
        failed = [
            e
            for e in responder_audit(docker, responder)[started:]
            if e["event"] == "lockdown-call" and e["outcome"] == "failed"
        ]
        assert failed and failed[0]["error"]
        assert unlocked.get("/lockdown")["locked"] is False
    finally:
        for network in shared:
            docker.check("docker network connect %s %s", network, responder.id)
        # The retries end before `unlocked` lifts lockdown, whatever failed above.
        wait_for(lambda: not health(responder_url)[1]["lockdown"]["pending"], DEADLINE_SECONDS, 0.2)
    assert wait_for(lambda: unlocked.get("/lockdown")["locked"], DEADLINE_SECONDS, 0.2)
    assert wait_for(lambda: health(responder_url)[0] == 200, DEADLINE_SECONDS, 0.2)
    outcomes = [e.get("outcome") for e in responder_audit(docker, responder)[started:]]
    assert outcomes[-1] == "engaged", outcomes


@pytest.mark.control("DET-08", "behaviour")
def test_every_alert_and_refusal_is_a_span_at_the_collector(
    docker: DockerHost, responder: Container, responder_url: str, unlocked: AdminApi, project: str
) -> None:
    recorded = post(responder_url, json.dumps(falco_alert("Notice")).encode())[1]
    refused = post(responder_url, b"{not json")[1]
    assert refused["recorded"] is True
    entries = responder_audit(docker, responder)
    alert_trace = next(e for e in entries if e["seq"] == recorded["seq"])["trace"]
    refusal_trace = next(e for e in reversed(entries) if e["event"] == "falco-alert-rejected")
    wanted = {alert_trace, refusal_trace["trace"]}

    def both(spans: list[Any]) -> bool:
        return wanted <= {s.trace_id for s in spans if s.service == "qcstack-falco-responder"}

    _, spans = wait_for_spans(docker, project, responder.attrs["Image"], both)
    assert both(spans), "the collector has no span of the responder for the two alerts"
    (span,) = [s for s in spans if s.trace_id == alert_trace]
    assert span.attributes["falco.rule"] == "qcstack unexpected process"
    assert span.attributes["qcstack.action"] == "recorded"
    (failed,) = [s for s in spans if s.trace_id == refusal_trace["trace"]]
    assert failed.status == "ERROR" and failed.attributes["error.type"] == "http.400"


@pytest.mark.control("DET-08", "behaviour")
def test_audit_log_of_the_responder_verifies(docker: DockerHost, responder: Container) -> None:
    result = docker.run("docker exec %s /usr/bin/python3 -m responder.audit verify", responder.id)
    assert result.rc == 0, result.stderr
    assert "intact" in result.stdout


POST_FROM_THE_DOCKER_HOST = """
import urllib.request
request = urllib.request.Request(
    f"http://127.0.0.1:{sys.argv[1]}/alerts",
    data=sys.argv[2].encode(),
    headers={"Content-Type": "application/json"},
    method="POST",
)
with urllib.request.urlopen(request, timeout=10) as response:
    report(status=response.status)
"""


@pytest.mark.control("DET-08", "behaviour")
def test_responder_token_is_never_in_its_logs_inspect_or_audit_log(
    docker: DockerHost, settings: Settings, responder: Container
) -> None:
    # An alert of this test's own, posted where Falco posts from (the Docker host's loopback,
    # a deployed VM's too), so there is a record to search wherever the suite runs.
    alert = json.dumps(falco_alert("Warning"))
    posted = docker.host_probe(POST_FROM_THE_DOCKER_HOST, str(settings.test_responder_port), alert)
    assert posted.data == {"status": 200}, posted.stderr
    logs = docker.check("docker logs %s 2>&1", responder.id)
    inspect = docker.check("docker inspect %s", responder.id)
    audit = json.dumps(responder_audit(docker, responder))
    assert logs.strip() and audit != "[]", "nothing to search"
    for text in (logs, inspect, audit):
        assert TEST_RESPONDER_TOKEN not in text
