"""The services whose syscalls are recorded, and the roles their processes play."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

RUNC_COMM = "runc:[2:INIT]"
"""runc's init: every process of a container (its first one and each `docker exec`) starts as
this, in the container's pid namespace and after its setuid, before it execs the real program."""


@dataclass(frozen=True)
class Service:
    """One compose service of the stack with a recorded seccomp profile."""

    name: str
    """The compose service; the stem of its files in seccomp/ (NAME.json, NAME.recorded.txt)."""
    uid: int
    """The host uid its processes run as (no userns remap): what bpftrace filters on."""
    main_comm: str
    """The comm of the main process once docker-init has forked and exec'd it."""
    main: str
    """Who the main process is, for the recorded file's header."""
    execd: str
    """What `docker exec` runs in it (healthchecks, probes), for the header."""
    workload: str
    """What the recording's workload made it do, for the header."""

    def roles(self) -> dict[str, str]:
        """The roles a recorded process can play, keyed as in Recording.roles."""
        return {
            "main": self.main,
            "docker-init": "docker-init (tini), PID 1",
            "exec": self.execd,
            "runc": "runc's init, before execve",
        }

    def profile_file(self, directory: Path) -> Path:
        return directory / f"{self.name}.json"

    def recorded_file(self, directory: Path) -> Path:
        return directory / f"{self.name}.recorded.txt"


QC_MCP = Service(
    name="qc-mcp",
    uid=10001,
    main_comm="python3",
    main="the MCP server process (python3 /app/launch.py)",
    execd="docker exec'd python3: healthchecks and the probes",
    workload=(
        "server start and stop, healthchecks, MCP initialize/list_tools/call_tool sessions "
        "(upstream down: the proxy answers 503; then through the egress proxy to the "
        "QuantConnect API double), docker pause/unpause, SIGSTOP/SIGCONT, requests to the proxy "
        "that it refuses, and the benign docker exec probes (/tmp writes, /proc reads, fork/fd "
        "limits, noexec exec, setuid, sockets, ctypes, threads, signals, orphan reaping, "
        "/proc/<pid>/fd/1 writes). Never the denied-syscall checks."
    ),
)
EGRESS_PROXY = Service(
    name="egress-proxy",
    uid=10002,
    main_comm="squid",
    main="squid (squid -N, no kids or helpers)",
    execd="docker exec'd /usr/local/bin/healthcheck (Go, static): the healthchecks",
    workload=(
        "squid start and clean stop (SIGTERM, exit 0), healthchecks, the MCP sessions' "
        "CONNECT tunnels to the QuantConnect API double (and 503s while it is down), a bare "
        "allowed tunnel, requests it denies (CONNECT to another name, to a .invalid name, to an "
        "IP literal, to another port; a plain GET http://; a malformed request; a client outside "
        "its subnet), docker pause/unpause, SIGSTOP/SIGCONT."
    ),
)
SERVICES: dict[str, Service] = {s.name: s for s in (QC_MCP, EGRESS_PROXY)}
