"""Drives qc-mcp through the workload phases the recording and the verification share."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stack.seccomp import SeccompError, log
from stack.seccomp.host import HOST_ENVIRONMENT, docker
from stack.seccomp.stage import CLIENT_CONTAINER, CLIENT_UID, NETWORK, SERVICE, Stage
from stack.seccomp.workload import PROBES, workload_source
from stack.settings import Settings


def preflight(settings: Settings) -> None:
    if os.geteuid() != 0:
        raise SeccompError("run as root: bpftrace and the secret files' owner need it")
    for tool in ("docker", "bpftrace", "openssl"):
        if shutil.which(tool, path=HOST_ENVIRONMENT["PATH"]) is None:
            raise SeccompError(f"{tool} is not installed (scripts/install-docker installs it)")
    image = settings.image("qc-mcp")
    if docker("image", "inspect", image, check=False).returncode != 0:
        raise SeccompError(f"image {image} is missing: run `bin/qcstack build` first")


def container_pid(container: str) -> int:
    """The host pid of the container's first process (docker-init)."""
    return int(docker("inspect", "-f", "{{.State.Pid}}", container).stdout.strip())


def pid_namespace(container: str) -> int:
    link = os.readlink(f"/proc/{container_pid(container)}/ns/pid")
    match = re.fullmatch(r"pid:\[(\d+)\]", link)
    if not match:
        raise SeccompError(f"unexpected pid namespace link {link}")
    return int(match.group(1))


def wait_for_healthchecks(container: str, count: int, timeout: float = 60) -> int:
    """Waits until Docker has run `count` healthchecks (each a docker exec of python3)."""
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
        "run", "--rm", "--name", CLIENT_CONTAINER, "--network", NETWORK,
        "--user", f"{CLIENT_UID}:{CLIENT_UID}", "--read-only", "--cap-drop", "ALL",
        "--security-opt", "no-new-privileges", "--entrypoint", "/usr/bin/python3", stage.image,
        "-c", workload_source("mcp_client"), f"http://{SERVICE}:8000/mcp",
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
        raise SeccompError(f"read_account through the API double failed: {report['first']}")
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


def stop_and_continue(container: str) -> None:
    """SIGSTOP then SIGCONT to every process of the container, as a debugger or a freeze would.

    A timed futex wait interrupted this way resumes through restart_syscall, which the kernel
    makes the process call: the docker exec'd sleeper must still finish its wait normally.
    """
    namespace = os.readlink(f"/proc/{container_pid(container)}/ns/pid")
    sleeper = subprocess.Popen(
        ["docker", "exec", container, "/usr/bin/python3", "-c",
         "import threading; threading.Event().wait(3.5); print('slept')"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=HOST_ENVIRONMENT,
    )  # fmt: skip
    time.sleep(1.5)
    members = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and os.readlink(entry / "ns" / "pid") == namespace:
                members.append(int(entry.name))
        except OSError:
            continue
    for pid in members:
        os.kill(pid, signal.SIGSTOP)
    time.sleep(1)
    for pid in members:
        os.kill(pid, signal.SIGCONT)
    out, err = sleeper.communicate(timeout=60)
    if sleeper.returncode != 0 or out.strip() != "slept":
        raise SeccompError(f"sleep interrupted by SIGSTOP/SIGCONT failed: {out}{err}")
    log(f"SIGSTOP/SIGCONT of {len(members)} processes: the interrupted sleep resumed")


def drive_workload(stage: Stage, phase_two_extra: Callable[[str], None] | None = None) -> list[int]:
    """Both phases of the workload; returns the pid namespaces of the qc-mcp containers."""
    namespaces = []
    log("phase 1: compose.yaml as is (no proxy: outbound calls fail at DNS)")
    container = stage.up(proxy=False)
    namespaces.append(pid_namespace(container))
    run_client(stage, expect_success=False)
    wait_for_healthchecks(container, 3)
    stage.stop(container, proxy=False)

    log("phase 2: with HTTPS_PROXY to the API double (full TLS round trip), plus probes")
    container = stage.up(proxy=True)
    namespaces.append(pid_namespace(container))
    run_client(stage, expect_success=True)
    run_probes(container)
    if phase_two_extra is not None:
        phase_two_extra(container)
    log("docker pause/unpause (as a kill switch might): sleeping calls resume")
    docker("pause", container)
    time.sleep(2)
    docker("unpause", container)
    stop_and_continue(container)
    run_client(stage, expect_success=True)
    wait_for_healthchecks(container, 3)
    stage.stop(container, proxy=True)
    return namespaces
