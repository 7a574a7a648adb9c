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
        "proxy to the QuantConnect API double), live deployments the gateway passed on once "
        "approved (with the stored brokerage settings filled in), list_backtests for the approval "
        "page, docker pause/unpause, SIGSTOP/SIGCONT, requests "
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
        "CONNECT tunnels to the QuantConnect API double (and 503s while it is down), among them "
        "the approved live deployments' and the approval page's, a bare "
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
        "as an operator's tooling: the lockdown flag, the audit log's verification (also as "
        "`python3 -m gateway.audit verify`)"
    ),
    workload=(
        "gateway start (profile live), clean stop (SIGTERM) and restart on its state volume (the "
        "audit log reopened and its chain read back), healthchecks, MCP sessions through "
        "gateway-relay and directly (initialize, list_tools, reads answered by the QuantConnect "
        "API double through qc-mcp, or failing while it is down; an unknown tool, a deployment "
        "carrying brokerage secrets and a rate-limited call refused; 401 without the bearer "
        "token or with a wrong one), each call audited (O_APPEND write and fsync); "
        "create_live_algorithm calls naming the stored brokerage configuration held (approval "
        "files written atomically) and decided from the host: approved through the JSON admin "
        "API (HTTP Basic) and on the approval pages (login form with a wrong password first, "
        "session cookie, CSRF tokens, the held call's page with the latest backtest from "
        "qc-mcp), denied through both; the approved ones run with the stored settings filled in "
        "and scrubbed from the answers (one failing while the upstream is down); lockdown "
        "engaged with the responder's token (an approval refused meanwhile) and lifted by the "
        "admin, and through its flag file, with calls refused meanwhile; malformed MCP requests "
        "(415, 400, 413 stated and chunked) and refused admin requests (415, 400, 413, 401, 403, "
        "404, 421), each in the access log; docker pause/unpause, SIGSTOP/SIGCONT."
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
        "gateway, the MCP sessions (held live deployments among them) and refused (401) requests "
        "of the gateway's clients on its network, and from the host's published loopback port "
        "the admin API, the approval pages and requests the gateway refuses (a 1 MiB body, "
        "stated and chunked, cut off by the gateway's 413), connections while the gateway is "
        "down (the dial fails, the client is closed), docker pause/unpause, SIGSTOP/SIGCONT."
    ),
)
OTEL_COLLECTOR = Service(
    name="otel-collector",
    uid=10006,
    main_comm="otelcol-qcstack",
    main="the collector (otelcol-qcstack, Go, static, built with ocb from otel/manifest.yaml)",
    execd="docker exec'd /usr/local/bin/healthcheck (Go, static): the healthchecks",
    log_alarms=("operation not permitted",),
    python=False,
    workload=(
        "collector start, clean stop (SIGTERM, exit 0) and restart on its volume, healthchecks, "
        "OTLP/HTTP protobuf spans from qc-mcp's tool calls (memory_limiter, redaction, batch, the "
        "file exporter appending to traces.jsonl), an OTLP/JSON span carrying canary secrets "
        "from a client on its network, qc-mcp's calls while it is stopped, docker "
        "pause/unpause, SIGSTOP/SIGCONT."
    ),
)
FALCO_RESPONDER = Service(
    name="falco-responder",
    uid=10007,
    main_comm="python3",
    main="the responder (python3 -m responder: uvicorn, Starlette, its lockdown caller's thread)",
    execd=(
        "docker exec'd /usr/local/bin/healthcheck (Go, static): the healthchecks; and python3: "
        "the audit log's verifier (`python3 -m responder.audit verify`) and the workload's timed "
        "wait"
    ),
    # A responder that gives up engaging lockdown says so in its log: a refused syscall in its
    # calls to the gateway would surface there too.
    log_alarms=("Operation not permitted", "gave up engaging lockdown"),
    workload=(
        "responder start, clean stop (SIGTERM) and restart on its state volume (the audit log "
        "reopened and its chain read back), healthchecks, Falco alerts POSTed from the host to "
        "its published loopback port: a qcstack-tagged Critical alert that engages the "
        "gateway's lockdown through POST /admin/api/lockdown/engage (lifted by the admin "
        "after), a Warning and an untagged Critical alert recorded only, a repeat suppressed "
        "that reads the gateway's state (GET /healthz) and engages lockdown again, "
        "refused bodies (not JSON 400, wrong content type 415, over the size limit 413, stated "
        "and chunked, not an alert 422), each audited (O_APPEND write and fsync); its spans to "
        "the collector, and alerts while the collector is stopped; a Critical alert while the "
        "gateway is stopped (the lockdown call retried with backoff until the gateway is back); "
        "the audit log verified with `python3 -m responder.audit verify`; docker pause/unpause, "
        "SIGSTOP/SIGCONT."
    ),
)
SERVICES: dict[str, Service] = {
    s.name: s
    for s in (QC_MCP, EGRESS_PROXY, GATEWAY, GATEWAY_RELAY, OTEL_COLLECTOR, FALCO_RESPONDER)
}
