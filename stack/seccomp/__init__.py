"""The seccomp allow-lists (RUN-05) of qc-mcp, the egress proxy, the gateway and its relay, the
collector and the Falco responder: record, generate, verify."""

from __future__ import annotations

import sys

from stack.process import CommandError


class SeccompError(CommandError):
    """The recording, the profile or its verification cannot go on; the message says why."""


def log(message: str) -> None:
    print(f"[seccomp] {message}", file=sys.stderr, flush=True)
