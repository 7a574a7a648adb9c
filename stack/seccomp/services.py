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
    log_alarms: tuple[str, ...] = ("Operation not permitted",)
    """Lines its log must never hold: a refused syscall surfacing as an error (Python's OSError
    text, squid's strerror, Go's lower-case errno text), or the program giving up."""
    python: bool = True
    """Its image has /usr/bin/python3, so `verify` runs the deny check inside it; without one
    (squid, the relay) the host reads its processes' seccomp mode instead."""

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
        "server start and stop, healthchecks, MCP initialize/list_tools/call_tool sessions, "
        "direct and the gateway's (upstream down: the proxy answers 503; then through the egress "
        "proxy to the QuantConnect API double), docker pause/unpause, SIGSTOP/SIGCONT, requests "
        "to the proxy that it refuses, and the benign docker exec probes (/tmp writes, /proc "
        "reads, fork/fd limits, noexec exec, setuid, sockets, ctypes, threads, signals, orphan "
        "reaping, /proc/<pid>/fd/1 writes). Never the denied-syscall checks."
    ),
)
EGRESS_PROXY = Service(
    name="egress-proxy",
    uid=10002,
    main_comm="squid",
    main="squid (squid -N, no kids or helpers)",
    execd="docker exec'd /usr/local/bin/healthcheck (Go, static): the healthchecks",
    log_alarms=("Operation not permitted", "FATAL"),
    python=False,
    workload=(
        "squid start and clean stop (SIGTERM, exit 0), healthchecks, the MCP sessions' "
        "CONNECT tunnels to the QuantConnect API double (and 503s while it is down), a bare "
        "allowed tunnel, requests it denies (CONNECT to another name, to a .invalid name, to an "
        "IP literal, to another port; a plain GET http://; a malformed request; a client outside "
        "its subnet), docker pause/unpause, SIGSTOP/SIGCONT."
    ),
)
GATEWAY = Service(
    name="gateway",
    uid=10004,
    main_comm="python3",
    main="the gateway (python3 -m gateway: uvicorn, the FastMCP proxy to qc-mcp)",
    execd=(
        "docker exec'd /usr/local/bin/healthcheck (Go, static): the healthchecks; and python3, "
        "as an operator's tooling: the lockdown flag and the audit log's verification"
    ),
    workload=(
        "gateway start, clean stop (SIGTERM) and restart on its state volume (the audit log "
        "reopened and its chain read back), healthchecks, MCP sessions through gateway-relay and "
        "directly (initialize, list_tools as its profile lists them, reads answered by the "
        "QuantConnect API double through qc-mcp, or failing while it is down; an unknown tool "
        "and a live-trading tool refused; 401 without the bearer token or with a wrong one), "
        "each call audited (O_APPEND write and fsync), lockdown engaged and lifted through its "
        "flag file with calls refused meanwhile, docker pause/unpause, SIGSTOP/SIGCONT."
    ),
)
GATEWAY_RELAY = Service(
    name="gateway-relay",
    uid=10005,
    main_comm="relay",
    main="the relay (tools/relay, Go, static: -listen :8080 -to gateway:8080)",
    execd="docker exec'd /usr/local/bin/healthcheck (Go, static): the healthchecks",
    log_alarms=("operation not permitted",),
    python=False,
    workload=(
        "relay start, clean stop (SIGTERM, exit 0) and restart, healthchecks through it to the "
        "gateway, the MCP sessions and refused (401) requests of the gateway's clients on its "
        "network and from the host's published loopback port, connections while the gateway is "
        "down (the dial fails, the client is closed), docker pause/unpause, SIGSTOP/SIGCONT."
    ),
)
SERVICES: dict[str, Service] = {s.name: s for s in (QC_MCP, EGRESS_PROXY, GATEWAY, GATEWAY_RELAY)}
