"""Drives the test stack through the workload phases the recording and the verification share."""

from __future__ import annotations

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

from stack.seccomp import SeccompError, log
from stack.seccomp.host import HOST_ENVIRONMENT, docker
from stack.seccomp.services import QC_MCP, SERVICES
from stack.seccomp.stage import (
    CANARY_CONTAINER,
    CANARY_PORT,
    CLIENT_CONTAINER,
    OUTSIDE_CLIENT_CONTAINER,
    WORKLOAD_UID,
    Running,
    Stage,
    network,
)
from stack.seccomp.workload import PROBES, workload_source
from stack.settings import Settings
from stack.testca import API_HOST

PROXY_ADDRESS = ("egress-proxy", "3128")


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
    """SIGSTOP then SIGCONT to every process of both containers, as a debugger or a freeze would.

    A timed futex wait interrupted this way resumes through restart_syscall, which the kernel
    makes the process call: the docker exec'd sleeper in qc-mcp must still finish its wait.
    """
    sleeper = subprocess.Popen(
        ["docker", "exec", running.qc_mcp, "/usr/bin/python3", "-c",
         "import threading; threading.Event().wait(3.5); print('slept')"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=HOST_ENVIRONMENT,
    )  # fmt: skip
    time.sleep(1.5)
    members = namespace_members(running.qc_mcp) + namespace_members(running.proxy)
    for pid in members:
        os.kill(pid, signal.SIGSTOP)
    time.sleep(1)
    for pid in members:
        os.kill(pid, signal.SIGCONT)
    out, err = sleeper.communicate(timeout=60)
    if sleeper.returncode != 0 or out.strip() != "slept":
        raise SeccompError(f"sleep interrupted by SIGSTOP/SIGCONT failed: {out}{err}")
    log(f"SIGSTOP/SIGCONT of {len(members)} processes: the interrupted sleep resumed")


@dataclass
class Workload:
    """What the recording and the verification need from a run of the workload."""

    cgroups: dict[str, list[int]] = field(default_factory=lambda: {name: [] for name in SERVICES})
    logs: list[dict[str, str]] = field(default_factory=list)  # per phase: service -> its log
    failures: list[str] = field(default_factory=list)

    def started(self, running: Running) -> None:
        for name in SERVICES:
            self.cgroups[name].append(cgroup_id(running.containers[name]))
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
    for container in (running.qc_mcp, running.proxy):
        wait_for_healthchecks(container, 3)
    workload.logs.append(stage.stop(running))

    log("phase 2: the API double up: tool calls through the proxy, probes, proxy denials")
    running = stage.up()
    workload.started(running)
    run_client(stage, expect_success=True)
    run_probes(running.qc_mcp)
    workload.failures += exercise_proxy(stage, running)
    if phase_two_extra is not None:
        workload.failures += phase_two_extra(running)
    log("docker pause/unpause of both (as a kill switch might): sleeping calls resume")
    for container in (running.qc_mcp, running.proxy):
        docker("pause", container)
    time.sleep(2)
    for container in (running.qc_mcp, running.proxy):
        docker("unpause", container)
    stop_and_continue(running)
    run_client(stage, expect_success=True)
    for container in (running.qc_mcp, running.proxy):
        wait_for_healthchecks(container, 3)
    workload.logs.append(stage.stop(running))
    return workload
