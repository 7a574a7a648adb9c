"""Fixtures for the infra suites: the Docker host, the stack's containers, and the canaries."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import testinfra

from infra_tests.dockerhost import DockerHost
from stack.falco.rules import OUR_RULES, STABLE_RULES, RuleSet, load_rules
from stack.settings import Settings
from stack.suites import lane_settings, test_secrets_dir

PROBES = Path(__file__).parent / "probes"
CANARY_IPV6_PREFIX = "fd0c:a7a1:5e57"  # unique local addresses: nobody else's


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("qcstack")
    group.addoption("--project", help="compose project of the stack under test")
    group.addoption(
        "--control",
        action="append",
        default=[],
        help="run only the tests of this control ID (repeatable); used by the mutation check",
    )
    group.addoption("--control-report", help="write each test's outcome and controls as JSON")
    group.addoption(
        "--mutation-lane",
        type=int,
        default=0,
        help="the mutation check's lane of the stack under test (its subnet and ports)",
    )
    group.addoption(
        "--disruptive",
        action="store_true",
        help="run the tests that recreate the deployed stack or reboot its VM (bin/qcstack "
        "vm-test runs them last, alone: other suites hold the containers they inspected)",
    )
    group.addoption(
        "--falco-rules",
        type=Path,
        default=OUR_RULES,
        help="qcstack's Falco rules file under test, loaded after Falco's stable rules (default: "
        "falco/qcstack_rules.yaml; the mutation check passes one with a control's rules cut out)",
    )
    group.addoption(
        "--stack-secrets-dir",
        help="folder of the stack's secret files on the Docker host (default: the test stacks' "
        "folder on this machine; a deployed VM's is /etc/qcstack/secrets)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wanted = set(config.getoption("--control"))
    if not wanted:
        return
    keep, drop = [], []
    for item in items:
        ids = {m.args[0] for m in item.iter_markers("control")}
        (keep if ids & wanted else drop).append(item)
    config.hook.pytest_deselected(items=drop)
    items[:] = keep


_outcomes: list[dict[str, Any]] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" or report.outcome != "passed":
        controls = [list(m) for m in getattr(report, "control_marks", [])]
        _outcomes.append({"test": report.nodeid, "outcome": report.outcome, "controls": controls})


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    outcome = yield
    report = outcome.get_result()
    report.control_marks = [tuple(m.args[:2]) for m in item.iter_markers("control")]


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = session.config.getoption("--control-report")
    if path:
        Path(path).write_text(json.dumps(_outcomes, indent=1))


@pytest.fixture(scope="session")
def settings(request: pytest.FixtureRequest) -> Settings:
    """The settings, as a mutation lane's stack has them when the suites run against one."""
    return lane_settings(Settings(), request.config.getoption("--mutation-lane"))


@pytest.fixture(scope="session")
def falco_rules(request: pytest.FixtureRequest) -> RuleSet:
    """Falco's stable rules, then the rules file under test (--falco-rules)."""
    path: Path = request.config.getoption("--falco-rules")
    assert path.is_file(), f"--falco-rules {path}: no such file"
    return load_rules([STABLE_RULES, path])


@pytest.fixture(scope="session")
def docker(request: pytest.FixtureRequest, settings: Settings) -> DockerHost:
    hosts = request.config.getoption("hosts", default=None)
    spec = hosts.split(",")[0] if hosts else settings.test_hosts
    ssh_config = request.config.getoption("ssh_config", default=None)
    secrets_dir = request.config.getoption("--stack-secrets-dir") or test_secrets_dir(settings)
    return DockerHost(testinfra.get_host(spec, ssh_config=ssh_config), str(secrets_dir))


@pytest.fixture(scope="session")
def is_local(docker: DockerHost) -> bool:
    return docker.host.backend.NAME == "local"


@pytest.fixture(scope="session")
def project(request: pytest.FixtureRequest, settings: Settings) -> str:
    return str(request.config.getoption("--project") or settings.test_project_name)


@dataclass(frozen=True)
class Container:
    """A running container of the stack, with its `docker inspect` data from the session start."""

    id: str
    attrs: dict[str, Any]

    @property
    def host_config(self) -> dict[str, Any]:
        return dict(self.attrs["HostConfig"])

    @property
    def service(self) -> str:
        return str(self.attrs["Config"]["Labels"]["com.docker.compose.service"])


def stack_container(docker: DockerHost, project: str, service: str) -> Container:
    container_id = docker.container_id(project, service)
    return Container(container_id, docker.inspect("container", container_id))


class StackContainers:
    """The stack's running containers by compose service, each inspected once, when first asked."""

    def __init__(self, docker: DockerHost, project: str) -> None:
        self.docker = docker
        self.project = project
        self.found: dict[str, Container] = {}

    def __getitem__(self, service: str) -> Container:
        if service not in self.found:
            self.found[service] = stack_container(self.docker, self.project, service)
        return self.found[service]


@pytest.fixture(scope="session")
def stack_containers(docker: DockerHost, project: str) -> StackContainers:
    return StackContainers(docker, project)


@pytest.fixture(scope="session")
def qc_mcp(docker: DockerHost, project: str) -> Container:
    return stack_container(docker, project, "qc-mcp")


@pytest.fixture(scope="session")
def egress_proxy(docker: DockerHost, project: str) -> Container:
    return stack_container(docker, project, "egress-proxy")


@pytest.fixture(scope="session")
def api_double(docker: DockerHost, project: str) -> Container:
    """The QuantConnect API double of the test stack (compose/test.yaml)."""
    return stack_container(docker, project, "qc-api-double")


def double_records(docker: DockerHost, api_double: Container) -> list[dict[str, Any]]:
    """Every request the QuantConnect API double received, oldest first."""
    lines = docker.check("docker logs %s", api_double.id).splitlines()
    return [json.loads(line)["qc_api_double"] for line in lines if '"qc_api_double"' in line]


def stack_network(project: str, name: str) -> str:
    """The Docker name of one of the stack's networks (mcp, egress, outside)."""
    return f"{project}_{name}"


@dataclass(frozen=True)
class McpSession:
    """What an MCP client saw: the tools listed and the results of its calls."""

    tools: list[str]
    calls: dict[str, dict[str, Any]]


def mcp_session(
    docker: DockerHost, project: str, image: str, calls: list[tuple[str, dict[str, Any]]]
) -> McpSession:
    """Runs an MCP client in a container of the tests' own on the stack's `mcp` network."""
    output = docker.check(
        "docker run --rm --network %s --user 10002:10002 --read-only --cap-drop ALL "
        "--security-opt no-new-privileges --entrypoint /usr/bin/python3 %s -c %s %s %s",
        stack_network(project, "mcp"),
        image,
        (PROBES / "mcp_client.py").read_text(),
        "http://qc-mcp:8000/mcp",
        json.dumps(calls),
    )
    data = json.loads(output.strip().splitlines()[-1])
    return McpSession(data["tools"], {call["tool"]: call for call in data["calls"]})


TOKEN_IN_CLIENT = "/run/secrets/gateway_token"  # noqa: S105 - a path, not a token


def gateway_client_command(docker: DockerHost, image: str, *, name: str = "") -> str:
    """`docker run` of an MCP client the way one on the Docker host would run: in the host's
    network namespace, to the gateway's loopback port, reading the test bearer token from its
    file (as the gateway's uid, the file's owner), so no test output ever shows it."""
    token_file = f"{docker.secrets_dir}/gateway_token"
    named = f"--name {name} " if name else ""
    return (
        f"docker run --rm {named}--network host --user 10004:10004 --read-only --cap-drop ALL "
        f"--security-opt no-new-privileges -v {token_file}:{TOKEN_IN_CLIENT}:ro "
        f"--entrypoint /usr/bin/python3 {image}"
    )


def gateway_client_arguments(
    settings: Settings, calls: list[tuple[str, dict[str, Any]]]
) -> list[str]:
    """What follows gateway_client_command: the MCP client probe, the gateway's URL, the calls and
    the token's path."""
    return [
        "-c",
        (PROBES / "mcp_client.py").read_text(),
        f"http://127.0.0.1:{settings.test_gateway_port}/mcp",
        json.dumps(calls),
        TOKEN_IN_CLIENT,
    ]


def gateway_calls(
    docker: DockerHost, settings: Settings, image: str, calls: list[tuple[str, dict[str, Any]]]
) -> dict[str, Any]:
    """Runs an MCP client through the gateway's loopback port with the test bearer token; returns
    the tools it listed and each call's result, in order."""
    arguments = gateway_client_arguments(settings, calls)
    output = docker.check(
        gateway_client_command(docker, image) + " %s" * len(arguments), *arguments
    )
    data: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return data


def gateway_session(
    docker: DockerHost, settings: Settings, image: str, calls: list[tuple[str, dict[str, Any]]]
) -> McpSession:
    """gateway_calls, with each call's result by tool name."""
    data = gateway_calls(docker, settings, image, calls)
    return McpSession(data["tools"], {call["tool"]: call for call in data["calls"]})


GATEWAY_STATE = "/var/lib/qcstack-gateway"
RESPONDER_STATE = "/var/lib/qcstack-responder"


def audit_entries(docker: DockerHost, container: Container, path: str) -> list[dict[str, Any]]:
    """Every entry of an audit log, read inside its container (it has no cat); a torn line fails
    here."""
    read = "import sys; print(open(sys.argv[1]).read(), end='')"
    text = docker.check("docker exec %s /usr/bin/python3 -c %s %s", container.id, read, path)
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def gateway_audit(docker: DockerHost, gateway: Container) -> list[dict[str, Any]]:
    """Every entry of the gateway's audit log."""
    return audit_entries(docker, gateway, f"{GATEWAY_STATE}/audit.jsonl")


def responder_audit(docker: DockerHost, responder: Container) -> list[dict[str, Any]]:
    """Every entry of the Falco responder's audit log."""
    return audit_entries(docker, responder, f"{RESPONDER_STATE}/audit.jsonl")


@pytest.fixture(scope="session")
def tool_calls(docker: DockerHost, project: str, qc_mcp: Container) -> McpSession:
    """Real tool calls from an MCP client: qc-mcp -> egress proxy -> QuantConnect API double."""
    return mcp_session(
        docker, project, qc_mcp.attrs["Image"], [("read_account", {}), ("list_projects", {})]
    )


@pytest.fixture(scope="session")
def qc_mcp_image(docker: DockerHost, qc_mcp: Container) -> dict[str, Any]:
    return docker.inspect("image", qc_mcp.attrs["Image"])


@dataclass(frozen=True)
class TarEntry:
    mode: str
    owner: str
    path: str


def image_files(docker: DockerHost, image: str) -> list[TarEntry]:
    """Every file of an image, read from a stopped copy so the running container is untouched."""
    created = docker.check("docker create %s", image).strip()
    try:
        listing = docker.check(f"docker export {created} | tar -tv --numeric-owner")
    finally:
        docker.run("docker rm -f %s", created)
    entries = []
    for line in listing.splitlines():
        fields = line.split(None, 5)
        path = fields[5].split(" -> ")[0]
        entries.append(TarEntry(mode=fields[0], owner=fields[1], path="/" + path.rstrip("/")))
    return entries


@pytest.fixture(scope="session")
def qc_mcp_files(docker: DockerHost, qc_mcp: Container) -> list[TarEntry]:
    return image_files(docker, qc_mcp.attrs["Image"])


class ImageFiles:
    """The files of each service's image, listed once, when first asked."""

    def __init__(self, docker: DockerHost, containers: StackContainers) -> None:
        self.docker = docker
        self.containers = containers
        self.found: dict[str, list[TarEntry]] = {}

    def __getitem__(self, service: str) -> list[TarEntry]:
        if service not in self.found:
            image = self.containers[service].attrs["Image"]
            self.found[service] = image_files(self.docker, image)
        return self.found[service]


@pytest.fixture(scope="session")
def side_files(docker: DockerHost, stack_containers: StackContainers) -> ImageFiles:
    return ImageFiles(docker, stack_containers)


def canary_ipv6_subnet(project: str) -> str:
    """A /64 of our own unique local prefix for each project, so the canary networks of test
    stacks that run side by side on one daemon do not collide."""
    return f"{CANARY_IPV6_PREFIX}:{hashlib.sha256(project.encode()).hexdigest()[:4]}::/64"


@pytest.fixture(scope="session")
def canary_network(docker: DockerHost, project: str) -> Iterator[dict[str, Any]]:
    """A network of the tests' own, IPv4 and IPv6, with a route out, for canary servers."""
    name = f"{project}-canary"
    docker.run("docker network rm %s", name)
    docker.check(
        "docker network create --label qcstack.test=canary --ipv6 --subnet %s %s",
        canary_ipv6_subnet(project),
        name,
    )
    yield docker.inspect("network", name)
    docker.run("docker network rm %s", name)


UDP_ECHO = """
import socket
server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
server.bind(("0.0.0.0", 9999))
while True:
    data, client = server.recvfrom(512)
    server.sendto(b"canary:" + data, client)
"""


def start_canary(
    docker: DockerHost,
    name: str,
    image: str,
    network: str,
    port: int,
    publish: str = "",
    udp_echo: bool = False,
) -> str:
    """Starts a tiny HTTP server container that the tests own (with udp_echo, a UDP echo server
    on port 9999 instead); returns its container id."""
    docker.run("docker rm -f %s", name)
    publish_args = f"-p {publish} " if publish else ""
    command = ("-c", UDP_ECHO) if udp_echo else ("-m", "http.server", "--bind", "::", str(port))
    return docker.check(
        "docker run -d --rm --name %s --label qcstack.test=canary --network %s --read-only "
        "--cap-drop ALL --security-opt no-new-privileges --user 10003:10003 --pids-limit 32 "
        f"--memory 64m {publish_args}--entrypoint /usr/bin/python3 %s" + " %s" * len(command),
        name,
        network,
        image,
        *command,
    ).strip()


@dataclass(frozen=True)
class Canary:
    name: str
    address: str
    port: int


def canary_address(docker: DockerHost, name: str, network: str) -> str:
    networks = docker.inspect("container", name)["NetworkSettings"]["Networks"]
    return str(networks[network]["IPAddress"])


@pytest.fixture(scope="session")
def outside_canary(docker: DockerHost, project: str, qc_mcp: Container) -> Iterator[Canary]:
    """An HTTP canary on the stack's outside network, where the proxy could reach it."""
    name, network = f"{project}-outside-canary", stack_network(project, "outside")
    start_canary(docker, name, qc_mcp.attrs["Image"], network, 8080)
    canary = Canary(name, canary_address(docker, name, network), 8080)
    assert docker.connects(canary.address, canary.port, wait_seconds=10), "canary did not start"
    yield canary
    docker.run("docker rm -f %s", name)


@pytest.fixture(scope="session")
def host_canary(docker: DockerHost, project: str, qc_mcp: Container) -> Iterator[int]:
    """A canary server on the Docker host's own network stack (a container with network=host).

    Anything listening on the host's addresses stands for the host's real services (SSH,
    local APIs); the tests aim only at this canary, on the gateway address of their own network.
    """
    free_port = "import socket; s = socket.socket(); s.bind(('', 0)); print(s.getsockname()[1])"
    port = int(docker.check("python3 -c %s", free_port))
    name = f"{project}-host-canary"
    start_canary(docker, name, qc_mcp.attrs["Image"], "host", port)
    assert docker.connects("127.0.0.1", port, wait_seconds=10), "the host canary did not start"
    # Something else listening on the port would pass for the canary: ours must be the one.
    running = docker.run("docker inspect -f {{.State.Running}} %s", name).stdout.strip()
    assert running == "true", f"the host canary is not running: port {port} may be taken"
    yield port
    docker.run("docker rm -f %s", name)
