"""The verify mode: the generated profile, enforced, under the workload plus the deny checks."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stack.seccomp import SeccompError, log
from stack.seccomp.drive import drive_workload, preflight
from stack.seccomp.host import docker
from stack.seccomp.profile import CLONE_NEW_FLAGS, MUST_DENY
from stack.seccomp.stage import Stage
from stack.seccomp.trace import syscall_numbers
from stack.seccomp.workload import workload_source
from stack.settings import Settings


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
    """Runs the deny check in qc-mcp and returns what failed, health and log included."""
    done = docker(
        "exec", container, "/usr/bin/python3", "-c", workload_source("deny_check"),
        json.dumps(deny_check_numbers()),
        check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise SeccompError(f"deny check crashed:\n{done.stdout}{done.stderr}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps(report, indent=2))
    failures = evaluate_deny_check(report)
    status = docker("inspect", "-f", "{{.State.Health.Status}}", container).stdout.strip()
    if status != "healthy":
        failures.append(f"qc-mcp is {status}, not healthy")
    logs = docker("logs", container)
    if "Operation not permitted" in logs.stdout + logs.stderr:
        failures.append("'Operation not permitted' in the server's log")
    return failures


def verify(settings: Settings, profile_file: Path) -> bool:
    """Runs the workload under profile_file with the deny checks; logs each failure."""
    preflight(settings)
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="qcrec-") as tmp:
        stage = Stage(settings, Path(tmp))
        stage.prepare(profile_file.read_text(encoding="utf-8"))
        stage.remove_leftovers()
        try:
            drive_workload(stage, lambda container: failures.extend(check_denials(container)))
        finally:
            stage.remove_leftovers()
    for failure in failures:
        log(f"FAIL: {failure}")
    if not failures:
        log("verify: healthy, 64 tools, tool calls answered, probes pass, denials hold")
    return not failures
