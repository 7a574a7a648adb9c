"""Runs docker on the host for the recorder, with an explicit environment."""

from __future__ import annotations

import re
import subprocess

from stack.process import SYSTEM_PATH, run
from stack.seccomp import SeccompError, log

HOST_ENVIRONMENT = {"PATH": SYSTEM_PATH}


def docker(
    *args: str, check: bool = True, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Runs `docker args...` and captures what it prints."""
    return run(["docker", *args], env=HOST_ENVIRONMENT, capture=True, check=check, timeout=timeout)


def verify_audit_log(container: str, package: str) -> tuple[int, str]:
    """(entries, what it said) of a service's own audit verifier, run in its container as
    `qcstack audit verify` runs it: `python3 -m PACKAGE.audit verify`; raises unless the chain
    is intact."""
    done = docker(
        "exec", container, "/usr/bin/python3", "-m", f"{package}.audit", "verify",
        check=False, timeout=60,
    )  # fmt: skip
    said = (done.stdout + done.stderr).strip()
    log(f"python3 -m {package}.audit verify: {done.returncode}: {said}")
    found = re.search(r"intact, (\d+) entries", said)
    if done.returncode != 0 or found is None:
        raise SeccompError(f"python3 -m {package}.audit verify: {done.returncode}: {said}")
    return int(found.group(1)), said
