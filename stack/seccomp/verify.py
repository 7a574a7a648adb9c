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
from stack.seccomp.services import SERVICES
from stack.seccomp.stage import Running, Stage
from stack.seccomp.trace import syscall_numbers
from stack.seccomp.workload import workload_source
from stack.settings import Settings

SECCOMP_FILTER_MODE = 2  # /proc/PID/status `Seccomp:` 2 = a filter is loaded (0 none, 1 strict)


def socket_families(profile: Mapping[str, Any]) -> list[int]:
    """The socket() families a profile allows (its SCMP_CMP_EQ rules on argument 0)."""
    return sorted(
        arg["value"]
        for rule in profile["syscalls"]
        if rule["names"] == ["socket"] and rule["action"] == "SCMP_ACT_ALLOW"
        for arg in rule["args"]
    )


def deny_check_numbers(profile: Mapping[str, Any]) -> dict[str, Any]:
    by_name = {name: number for number, name in syscall_numbers().items()}
    return {
        "deny": {name: by_name[name] for name in MUST_DENY},
        "clone": by_name["clone"],
        "clone3": by_name["clone3"],
        "clone_new": dict(CLONE_NEW_FLAGS),
        "families": socket_families(profile),
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


def check_denials(name: str, container: str, profile: Mapping[str, Any]) -> list[str]:
    """Runs the deny check in a service's container and returns what failed."""
    done = docker(
        "exec", container, "/usr/bin/python3", "-c", workload_source("deny_check"),
        json.dumps(deny_check_numbers(profile)),
        check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise SeccompError(f"deny check in {name} crashed:\n{done.stdout}{done.stderr}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps({name: report}, indent=2))
    return [f"{name}: {failure}" for failure in evaluate_deny_check(report)]


def seccomp_mode(pid: int) -> tuple[str, int]:
    """(comm, Seccomp mode) of a host pid, read from /proc as the host sees it."""
    comm = Path(f"/proc/{pid}/comm").read_text(encoding="utf-8").strip()
    for line in Path(f"/proc/{pid}/status").read_text(encoding="utf-8").splitlines():
        if line.startswith("Seccomp:"):
            return comm, int(line.split()[1])
    raise SeccompError(f"no Seccomp line in /proc/{pid}/status")


def check_running(running: Running, profiles: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Every service healthy; the deny check in each one with an interpreter (qc-mcp, the
    gateway); and every process of every service filtered: squid and the relay have no
    interpreter to run a deny check in, so for them the host's reading of their seccomp mode is
    the check (their rules are checked by the unit tests)."""
    failures = []
    for name, service in SERVICES.items():
        container = running.containers[name]
        status = docker("inspect", "-f", "{{.State.Health.Status}}", container).stdout.strip()
        if status != "healthy":
            failures.append(f"{name} is {status}, not healthy")
        if service.python:
            failures += check_denials(name, container, profiles[name])
        modes = [seccomp_mode(pid) for pid in namespace_members(container)]
        log(f"{name} processes (comm, Seccomp mode): {modes}")
        if not any(comm == service.main_comm for comm, _ in modes):
            failures.append(f"no {service.main_comm} process in {name}: {modes}")
        failures += [
            f"{name}: {comm} runs with Seccomp: {mode}, not {SECCOMP_FILTER_MODE}"
            for comm, mode in modes
            if mode != SECCOMP_FILTER_MODE
        ]
    return failures


def check_logs(phases: list[dict[str, str]]) -> list[str]:
    failures = []
    for phase, logs in enumerate(phases, start=1):
        for name, service in SERVICES.items():
            alarms = service.log_alarms
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
    parsed = {name: json.loads(text) for name, text in profiles.items()}
    with tempfile.TemporaryDirectory(prefix="qcrec-") as tmp:
        stage = Stage(settings, Path(tmp))
        stage.prepare(profiles)
        stage.remove_leftovers()
        try:
            workload = drive_workload(stage, lambda running: check_running(running, parsed))
        finally:
            stage.remove_leftovers()
    failures = workload.failures + check_logs(workload.logs)
    for failure in failures:
        log(f"FAIL: {failure}")
    log(f"verify took {time.monotonic() - started:.0f}s")
    if not failures:
        log(
            f"verify: {', '.join(SERVICES)} healthy under their profiles; 64 tools from qc-mcp, "
            "the gateway's as its profile lists them, through the relay and directly; "
            "read_account answered through the proxy by the API double; held live deployments "
            "approved and denied through the admin API and the approval pages, the approved ones "
            "run with the stored brokerage settings; the gateway's refusals (401, unknown and "
            "credentialed live calls, the rate limit, lockdown by the responder and its flag "
            "file, malformed and refused admin requests) hold, its audit chain verifies (also "
            "with python3 -m gateway.audit verify) after a restart; the responder records each "
            "Falco alert, engages lockdown for the qcstack Critical ones (retrying while the "
            "gateway is down), refuses malformed bodies, and its audit chain verifies after a "
            "restart; probes pass, proxy denials hold, the deny checks hold in qc-mcp, the "
            "gateway and the responder, every process filtered (Seccomp: 2), clean stops, no "
            "EPERM/FATAL in the logs"
        )
    return not failures
