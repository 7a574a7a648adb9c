"""The private folder and the compose project of one recording or verification run.

The project is a real test stack (compose.yaml + compose/test.yaml: the gateway and its relay,
qc-mcp, the egress proxy, the collector, the Falco responder and the QuantConnect API double),
with canary credentials, a throwaway
test CA and the profiles under test for every recorded service, all in the run's own folder.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Network
from pathlib import Path

from stack.compose import ComposeProject
from stack.process import CommandError
from stack.seccomp import SeccompError, log
from stack.seccomp.host import docker
from stack.seccomp.services import (
    EGRESS_PROXY,
    FALCO_RESPONDER,
    GATEWAY,
    GATEWAY_RELAY,
    OTEL_COLLECTOR,
    QC_MCP,
    SERVICES,
)
from stack.settings import Settings
from stack.suites import prepare_test_secrets, test_project
from stack.testca import API_HOST

RECORD_PROJECT = "qcstack-record"  # every container, network and secret here lives in it
# The record/verify stack's egress subnet. Its own, so that `seccomp record|verify` can run
# while a test stack (settings.test_egress_subnet, 10.231.254.0/28) or the operator's stack
# (settings.egress_subnet, 10.231.253.0/28) is up: Docker refuses overlapping subnets. The
# proxy's policy admits this subnet alone, as it does for the other stacks.
RECORD_EGRESS_SUBNET = IPv4Network("10.231.252.0/28")
RECORD_GATEWAY_PORT = 18090  # likewise beside the test stack's 18080 and the operator's 8080
RECORD_RESPONDER_PORT = 18091  # the responder's, beside the test stack's 18079 and the operator's
API_DOUBLE = "qc-api-double"  # compose/test.yaml's QuantConnect API double: not recorded
WORKLOAD_UID = 10003  # the containers below: no service's uid, so bpftrace skips them
CLIENT_CONTAINER = "qcrec-client"  # the MCP client, on the mcp network
# The gateway's MCP clients: on the front network (through gateway-relay, as the host's published
# port is) or on the door network (to the gateway itself, as the relay is).
GATEWAY_CLIENT_CONTAINER = "qcrec-gateway-client"
GATEWAY_LIVE_CONTAINER = "qcrec-gateway-live"  # an agent's held live deployments, on front
# The gateway of the record stack, set in a compose override of the run's own (its environment
# wins over both the settings' env_file and compose/test.yaml): profile live, so that
# create_live_algorithm is held for a person, who is the workload on the admin side; a wait long
# enough for it to decide every held call through the admin API or the approval pages (the
# default is 15 minutes); and one low rate limit, on a tool the gateway's client calls twice, so
# that the second call is refused (instead of compose/test.yaml's limit for its own suite, which
# the workload's sessions would run into).
RATE_LIMITED_TOOL = "read_latest_mcp_server_version"
RECORD_GATEWAY_ENVIRONMENT: Mapping[str, str] = {
    "QCSTACK_GATEWAY_PROFILE": "live",
    "QCSTACK_GATEWAY_APPROVAL_WAIT_SECONDS": "120",
    "QCSTACK_GATEWAY_RATE_LIMITS": json.dumps({RATE_LIMITED_TOOL: "1/3600"}),
}
CANARY_CONTAINER = "qcrec-canary"  # an HTTP canary on the outside network: the denied targets
CANARY_PORT = 8080
OUTSIDE_CLIENT_CONTAINER = "qcrec-outside-client"  # a would-be open-proxy user, outside
# While the API double is stopped, its name must still resolve to a container of ours: on the
# outside network Docker's resolver forwards names it does not know to the host's resolvers, so
# squid would otherwise look up, and connect to, the real www.quantconnect.com. This canary
# holds the name and listens on nothing, so the tunnels fail at once (squid answers 503).
UPSTREAM_DOWN_CONTAINER = "qcrec-upstream-down"
TELEMETRY_CLIENT_CONTAINER = "qcrec-telemetry-client"  # an OTLP sender on the telemetry network
OUR_CONTAINERS = (
    TELEMETRY_CLIENT_CONTAINER,
    CLIENT_CONTAINER,
    GATEWAY_CLIENT_CONTAINER,
    GATEWAY_LIVE_CONTAINER,
    CANARY_CONTAINER,
    OUTSIDE_CLIENT_CONTAINER,
    UPSTREAM_DOWN_CONTAINER,
)


def network(name: str) -> str:
    """The Docker name of one of the record project's networks (front, door, mcp, egress,
    telemetry, outside)."""
    return f"{RECORD_PROJECT}_{name}"


def container_state(container: str) -> dict[str, object]:
    state: dict[str, object] = json.loads(
        docker("inspect", "-f", "{{json .State}}", container).stdout
    )
    return state


# The exit codes of a clean stop (SIGTERM through docker-init), in the order `stop` stops them.
# Python's servers end with 0, or 143 when uvicorn re-raises SIGTERM at itself; the relay and
# squid exit 0.
CLEAN_EXIT_CODES: Mapping[str, tuple[int, ...]] = {
    FALCO_RESPONDER.name: (0, 143),  # uvicorn, as the gateway: first, as it calls the gateway
    GATEWAY_RELAY.name: (0,),
    GATEWAY.name: (0, 143),
    QC_MCP.name: (0, 143),
    OTEL_COLLECTOR.name: (0,),  # after qc-mcp, which flushes its last spans as it stops
    EGRESS_PROXY.name: (0,),
}


@dataclass(frozen=True)
class Running:
    """The containers of one `up`: compose service -> container id."""

    containers: Mapping[str, str]

    @property
    def qc_mcp(self) -> str:
        return self.containers[QC_MCP.name]

    @property
    def proxy(self) -> str:
        return self.containers[EGRESS_PROXY.name]

    @property
    def gateway(self) -> str:
        return self.containers[GATEWAY.name]

    @property
    def relay(self) -> str:
        return self.containers[GATEWAY_RELAY.name]

    @property
    def responder(self) -> str:
        return self.containers[FALCO_RESPONDER.name]


@dataclass(frozen=True)
class Stage:
    """The folder (secrets, test CA, seccomp profiles) and the compose project of one run."""

    settings: Settings
    root: Path

    @property
    def profile_dir(self) -> Path:
        return self.root / "seccomp"

    @property
    def secrets(self) -> Path:
        return self.root / "secrets"

    @property
    def image(self) -> str:
        """The qc-mcp image: it also runs the MCP client and the canaries (python3)."""
        return self.settings.image("qc-mcp")

    @property
    def override(self) -> Path:
        """The run's compose override: the record stack's gateway settings."""
        return self.root / "record.yaml"

    def prepare(self, profiles: Mapping[str, str]) -> None:
        """Writes each recorded service's profile, canary secrets, a fresh test CA and the
        compose override."""
        missing = set(SERVICES) - set(profiles)
        if missing:
            raise SeccompError(f"no profile for {sorted(missing)}")
        self.profile_dir.mkdir(mode=0o755)
        for name, text in profiles.items():
            SERVICES[name].profile_file(self.profile_dir).write_text(text, encoding="utf-8")
        prepare_test_secrets(self.settings, self.secrets)
        override = {"services": {GATEWAY.name: {"environment": dict(RECORD_GATEWAY_ENVIRONMENT)}}}
        self.override.write_text(json.dumps(override, indent=2) + "\n", encoding="utf-8")

    def project(self) -> ComposeProject:
        return test_project(
            self.settings,
            RECORD_PROJECT,
            overrides=(self.override,),
            egress_subnet=RECORD_EGRESS_SUBNET,
            gateway_port=RECORD_GATEWAY_PORT,
            responder_port=RECORD_RESPONDER_PORT,
            secrets_dir=self.secrets,
            seccomp_dir=self.profile_dir,
        )

    def up(self) -> Running:
        """Starts the whole test stack and waits until every service is healthy."""
        project = self.project()
        try:
            project.up(wait_timeout=120)
        except CommandError as error:
            raise SeccompError(f"{error}\nlogs:\n{project.logs()}") from error
        containers = {}
        for service in (*SERVICES, API_DOUBLE):
            container = project.run("ps", "-q", service, capture=True).strip()
            if not container:
                raise SeccompError(f"{service} did not start")
            containers[service] = container
        return Running(containers)

    def run_helper(self, name: str, network_name: str, *args: str) -> str:
        """Starts a container of our own (hardened, not traced) in the background."""
        return docker(
            "run", "-d", "--rm", "--name", name, "--network", network(network_name),
            "--user", f"{WORKLOAD_UID}:{WORKLOAD_UID}", "--read-only", "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges", "--pids-limit", "32", "--memory", "64m",
            *args,
        ).stdout.strip()  # fmt: skip

    def stop_upstream(self) -> None:
        """Upstream down: the API double stopped, its name held by a canary that refuses 443."""
        self.run_helper(
            UPSTREAM_DOWN_CONTAINER, "outside", "--network-alias", API_HOST,
            "--entrypoint", "/usr/bin/python3", self.image, "-c", "import time; time.sleep(3600)",
        )  # fmt: skip
        self.project().run("stop", API_DOUBLE)
        log(f"{API_DOUBLE} stopped; {API_HOST} now names {UPSTREAM_DOWN_CONTAINER} (no listener)")

    def start_canary(self) -> str:
        """An HTTP canary on the outside network; returns its address there."""
        self.run_helper(
            CANARY_CONTAINER, "outside", "--entrypoint", "/usr/bin/python3", self.image,
            "-m", "http.server", "--bind", "0.0.0.0", str(CANARY_PORT),  # noqa: S104 -- in the canary
        )  # fmt: skip
        for _ in range(50):
            networks = json.loads(
                docker(
                    "inspect", "-f", "{{json .NetworkSettings.Networks}}", CANARY_CONTAINER
                ).stdout
            )  # fmt: skip
            address = str((networks.get(network("outside")) or {}).get("IPAddress") or "")
            if address:
                return address
            time.sleep(0.2)
        raise SeccompError(f"{CANARY_CONTAINER} has no address on {network('outside')}")

    def stop_service(self, running: Running, name: str) -> str:
        """Stops one service the way Docker does (SIGTERM to docker-init), checks that it ended
        cleanly, and returns its log."""
        started = time.monotonic()
        self.project().run("stop", "--timeout", "15", name)
        took = time.monotonic() - started
        container = running.containers[name]
        state = container_state(container)
        log(
            f"{name} stopped in {took:.1f}s: exit code {state['ExitCode']}, "
            f"OOMKilled {state['OOMKilled']}"
        )
        if state["OOMKilled"] or state["ExitCode"] not in CLEAN_EXIT_CODES[name]:
            raise SeccompError(f"{name} did not stop cleanly: {state}")
        done = docker("logs", container)
        return done.stdout + done.stderr

    def start_again(self, running: Running, name: str, timeout: float = 120) -> None:
        """Starts a stopped service's container again (the same container, its volume kept) and
        waits until every service is healthy. Not `up --wait`: that gives up at once on a
        service that is unhealthy meanwhile, as the relay is while the gateway is down, instead
        of waiting for its next check."""
        self.project().run("start", name)
        deadline = time.monotonic() + timeout
        while True:
            status = {
                service: docker(
                    "inspect", "-f", "{{.State.Health.Status}}", container
                ).stdout.strip()
                for service, container in running.containers.items()
            }
            if all(value == "healthy" for value in status.values()):
                return
            if time.monotonic() > deadline:
                raise SeccompError(f"not healthy {timeout:.0f}s after {name} started: {status}")
            time.sleep(1)

    def stop(self, running: Running) -> dict[str, str]:
        """Stops each service, clients first (the responder, the relay, the gateway, qc-mcp, the
        collector, then the proxy); checks each ended cleanly; returns their logs; then takes the
        project down."""
        logs = {name: self.stop_service(running, name) for name in CLEAN_EXIT_CODES}
        self.remove_our_containers()  # attached to the outside network, which down removes
        self.project().down(remove_volumes=True)
        return logs

    def remove_our_containers(self) -> None:
        for name in OUR_CONTAINERS:
            if docker("ps", "-aq", "--filter", f"name=^{name}$").stdout.strip():
                docker("rm", "-f", name)

    def remove_leftovers(self) -> None:
        """Starts clean: our compose project down, our named containers gone (only ours)."""
        self.remove_our_containers()
        self.project().down(remove_volumes=True)
