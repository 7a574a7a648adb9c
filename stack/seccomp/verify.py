"""The verify mode: the generated profiles, enforced, under the workload plus the deny checks."""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stack.seccomp import SeccompError, log
from stack.seccomp.drive import drive_workload, namespace_members, preflight
from stack.seccomp.host import docker
from stack.seccomp.profile import CLONE_NEW_FLAGS, MUST_DENY
from stack.seccomp.services import EGRESS_PROXY, QC_MCP, SERVICES
from stack.seccomp.stage import Running, Stage
from stack.seccomp.trace import syscall_numbers
from stack.seccomp.workload import workload_source
from stack.settings import Settings

SECCOMP_FILTER_MODE = 2  # /proc/PID/status `Seccomp:` 2 = a filter is loaded (0 none, 1 strict)
# What must never appear in a service's log under its profile: a refused syscall surfacing as
# an error (Python's OSError text, or squid's strerror), or squid giving up.
LOG_ALARMS: Mapping[str, tuple[str, ...]] = {
    QC_MCP.name: ("Operation not permitted",),
    EGRESS_PROXY.name: ("Operation not permitted", "FATAL"),
}


def deny_check_numbers() -> dict[str, Any]:
    by_name = {name: number for number, name in syscall_numbers().items()}
    return {
        "deny": {name: by_name[name] for name in MUST_DENY},
        "clone": by_name["clone"],
        "clone3": by_name["clone3"],
        "clone_new": dict(CLONE_NEW_FLAGS),
    }


def evaluate_deny_check(report: Mapping[str, Any]) -> list[str]:
    """The failures in a deny-check report (empty when every rule holds)."""
    failures = [f"{n}: {r}" for n, r in report["denied"].items() if r != "EPERM"]
    rules = report["argument_rules"]
    if rules["clone3"] != "ENOSYS":
        failures.append(f"clone3: {rules['clone3']}")
    for key, result in rules.items():
        if key.startswith(("clone CLONE_", "socket ")) and result != "EPERM":
            failures.append(f"{key}: {result}")
    for key, result in report["allowed"].items():
        if result not in (True, "succeeded"):
            failures.append(f"{key} should work: {result}")
    return failures


def check_denials(container: str) -> list[str]:
    """Runs the deny check in qc-mcp and returns what failed."""
    done = docker(
        "exec", container, "/usr/bin/python3", "-c", workload_source("deny_check"),
        json.dumps(deny_check_numbers()),
        check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise SeccompError(f"deny check crashed:\n{done.stdout}{done.stderr}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps(report, indent=2))
    return [f"qc-mcp: {failure}" for failure in evaluate_deny_check(report)]


def seccomp_mode(pid: int) -> tuple[str, int]:
    """(comm, Seccomp mode) of a host pid, read from /proc as the host sees it."""
    comm = Path(f"/proc/{pid}/comm").read_text(encoding="utf-8").strip()
    for line in Path(f"/proc/{pid}/status").read_text(encoding="utf-8").splitlines():
        if line.startswith("Seccomp:"):
            return comm, int(line.split()[1])
    raise SeccompError(f"no Seccomp line in /proc/{pid}/status")


def check_running(running: Running) -> list[str]:
    """Both services healthy, qc-mcp's deny checks, and the proxy's processes filtered: squid
    has no interpreter to run a deny check in, so the host reads their seccomp mode instead."""
    failures = check_denials(running.qc_mcp)
    for name, container in running.containers.items():
        if name not in SERVICES:
            continue
        status = docker("inspect", "-f", "{{.State.Health.Status}}", container).stdout.strip()
        if status != "healthy":
            failures.append(f"{name} is {status}, not healthy")
    modes = [seccomp_mode(pid) for pid in namespace_members(running.proxy)]
    log(f"egress-proxy processes (comm, Seccomp mode): {modes}")
    if not any(comm == EGRESS_PROXY.main_comm for comm, _ in modes):
        failures.append(f"no squid process in egress-proxy: {modes}")
    failures += [
        f"egress-proxy: {comm} runs with Seccomp: {mode}, not {SECCOMP_FILTER_MODE}"
        for comm, mode in modes
        if mode != SECCOMP_FILTER_MODE
    ]
    return failures


def check_logs(phases: list[dict[str, str]]) -> list[str]:
    failures = []
    for phase, logs in enumerate(phases, start=1):
        for name, alarms in LOG_ALARMS.items():
            lines = [line for line in logs[name].splitlines() if any(a in line for a in alarms)]
            failures += [f"{name}'s log, phase {phase}: {line[:300]}" for line in lines]
    return failures


def verify(settings: Settings, profile_dir: Path) -> bool:
    """Runs the workload under the profiles in profile_dir with the checks; logs each failure."""
    preflight(settings)
    started = time.monotonic()
    profiles = {
        name: service.profile_file(profile_dir).read_text(encoding="utf-8")
        for name, service in SERVICES.items()
    }
    with tempfile.TemporaryDirectory(prefix="qcrec-") as tmp:
        stage = Stage(settings, Path(tmp))
        stage.prepare(profiles)
        stage.remove_leftovers()
        try:
            workload = drive_workload(stage, check_running)
        finally:
            stage.remove_leftovers()
    failures = workload.failures + check_logs(workload.logs)
    for failure in failures:
        log(f"FAIL: {failure}")
    log(f"verify took {time.monotonic() - started:.0f}s")
    if not failures:
        log(
            "verify: both services healthy under their profiles, 64 tools, read_account answered "
            "through the proxy by the API double, probes pass, proxy denials hold, qc-mcp's "
            "denials hold, squid filtered (Seccomp: 2), clean stops, no EPERM/FATAL in the logs"
        )
    return not failures
