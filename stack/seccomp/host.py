"""Runs docker on the host for the recorder, with an explicit environment."""

from __future__ import annotations

import subprocess

from stack.process import SYSTEM_PATH, run

HOST_ENVIRONMENT = {"PATH": SYSTEM_PATH}


def docker(
    *args: str, check: bool = True, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Runs `docker args...` and captures what it prints."""
    return run(["docker", *args], env=HOST_ENVIRONMENT, capture=True, check=check, timeout=timeout)
