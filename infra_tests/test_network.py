"""NET controls: nothing outside the stack reaches qc-mcp, and qc-mcp, the gateway and the
collector reach nothing outside."""

from __future__ import annotations

import errno
import json
import textwrap
from collections.abc import Iterator
from ipaddress import IPv4Network
from typing import Any

import pytest

from infra_tests.conftest import Canary, Container, StackContainers, stack_network, start_canary
from infra_tests.dockerhost import PROBE_PRELUDE, DockerHost, ProbeResult
from stack.settings import Settings

SERVER_PORT = 8000
CONNECT = """
    import socket
    try:
        socket.create_connection((sys.argv[1], int(sys.argv[2])), 3).close()
        report(connected=True, error=None)
    except OSError as error:
        report(connected=False, error=error.errno or "timeout")
"""
# EADDRNOTAVAIL: no address of that family to send from (IPv6 on a network without it).
UNREACHABLE = (
    errno.EHOSTUNREACH,
    errno.ENETUNREACH,
    errno.ECONNREFUSED,
    errno.EADDRNOTAVAIL,
    "timeout",
)
# One datagram to a UDP echo canary; self-contained, so it runs in qc-mcp and on the Docker host.
UDP_SEND = (
    "import json, socket, sys\n"
    "family = socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET\n"
    "s = socket.socket(family, socket.SOCK_DGRAM)\n"
    "s.settimeout(3)\n"
    "try:\n"
    "    s.sendto(b'exfiltrated', (sys.argv[1], int(sys.argv[2])))\n"
    "    print(json.dumps({'answered': s.recv(64).startswith(b'canary:'), 'error': None}))\n"
    "except OSError as error:\n"
    "    print(json.dumps({'answered': False, 'error': error.errno or 'timeout'}))\n"
)


CONFINED = ["qc-mcp", "gateway"]
"""The services with no route out: qc-mcp, and the gateway that holds the brokerage secrets."""
CONFINED_CONFIG = [
    *CONFINED,
    pytest.param("otel-collector", marks=pytest.mark.control("OBS-04", "config")),
]
CONFINED_BEHAVIOUR = [
    *CONFINED,
    pytest.param("otel-collector", marks=pytest.mark.control("OBS-04", "behaviour")),
]
"""The same with the otel-collector, which holds every trace (OBS-04)."""
NO_INTERPRETER = {"otel-collector"}
"""Services whose image has no python3: probed from the host in their network namespace."""


def probe(docker: DockerHost, container: Container, source: str, *args: str) -> ProbeResult:
    """Runs a network probe as the service would: inside it, or in its network namespace."""
    if container.service in NO_INTERPRETER:
        return docker.netns_probe(container.id, source, *args)
    return docker.probe(container.id, source, *args)


def network_names(container: Container) -> list[str]:
    return sorted(container.attrs["NetworkSettings"]["Networks"])


def ipv4_gateway(network: dict[str, Any]) -> str:
    """The network's IPv4 gateway address; Docker takes the subnet's first host when not told."""
    config = next(c for c in network["IPAM"]["Config"] if "." in c["Subnet"])
    return str(config.get("Gateway") or next(IPv4Network(config["Subnet"]).hosts()))


@pytest.fixture(scope="module")
def published_canary(
    docker: DockerHost, canary_network: dict[str, Any], project: str, qc_mcp: Container
) -> Iterator[Canary]:
    """A canary on the tests' own network, published on that network's host-side address only:
    reachable through any route out of a container, and from nowhere else."""
    gateway = ipv4_gateway(canary_network)
    name = f"{project}-published-canary"
    start_canary(
        docker, name, qc_mcp.attrs["Image"], canary_network["Name"], 8080, f"{gateway}::8080"
    )
    port = int(docker.check("docker port %s 8080/tcp", name).strip().rsplit(":", 1)[1])
    yield Canary(name, gateway, port)
    docker.run("docker rm -f %s", name)


@pytest.fixture(scope="module")
def published_udp_canary(
    docker: DockerHost, canary_network: dict[str, Any], project: str, qc_mcp: Container
) -> Iterator[Canary]:
    """A UDP echo canary, published like the TCP one."""
    gateway = ipv4_gateway(canary_network)
    name = f"{project}-published-udp-canary"
    start_canary(
        docker,
        name,
        qc_mcp.attrs["Image"],
        canary_network["Name"],
        9999,
        f"{gateway}::9999/udp",
        udp_echo=True,
    )
    port = int(docker.check("docker port %s 9999/udp", name).strip().rsplit(":", 1)[1])
    answered = docker.check("python3 -c %s %s %s", UDP_SEND, gateway, str(port))
    assert json.loads(answered.splitlines()[-1])["answered"], "the UDP canary is not up"
    yield Canary(name, gateway, port)
    docker.run("docker rm -f %s", name)


@pytest.mark.control("NET-01", "config")
@pytest.mark.parametrize("service", ["qc-mcp", "gateway", "egress-proxy", "otel-collector"])
def test_no_port_is_published(stack_containers: StackContainers, service: str) -> None:
    container = stack_containers[service]
    assert not container.host_config["PortBindings"]
    assert not any(container.attrs["NetworkSettings"]["Ports"].values() or [None])


@pytest.mark.control("NET-01", "config")
def test_relay_publishes_its_one_port_on_loopback_only(
    stack_containers: StackContainers, settings: Settings
) -> None:
    bindings = stack_containers["gateway-relay"].host_config["PortBindings"]
    assert bindings == {
        "8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(settings.test_gateway_port)}]
    }


@pytest.mark.control("NET-01", "behaviour")
def test_gateway_port_is_unreachable_on_the_hosts_other_addresses(
    docker: DockerHost, settings: Settings
) -> None:
    port = settings.test_gateway_port
    assert docker.connects("127.0.0.1", port), "the gateway's own port is not up"
    addresses = docker.check("ip -o -4 addr show scope global").split()
    others = [a.split("/")[0] for a in addresses if "/" in a and "." in a]
    assert others, "the host has no other IPv4 address to try"
    assert [a for a in others if docker.connects(a, port)] == []


@pytest.mark.control("NET-02", "config")
def test_relay_sits_between_the_host_and_the_gateway_only(
    docker: DockerHost, stack_containers: StackContainers, project: str
) -> None:
    relay = stack_containers["gateway-relay"]
    assert network_names(relay) == [stack_network(project, "door"), stack_network(project, "front")]
    front = docker.inspect("network", stack_network(project, "front"))
    assert front["Options"].get("com.docker.network.bridge.enable_ip_masquerade") == "false"
    door = network_names(stack_containers["gateway"])
    assert stack_network(project, "mcp") in door


@pytest.mark.control("NET-02", "behaviour")
def test_relay_cannot_reach_qc_mcp_around_the_gateway(
    docker: DockerHost, stack_containers: StackContainers, project: str
) -> None:
    qc_mcp = stack_containers["qc-mcp"].attrs["NetworkSettings"]["Networks"]
    address = qc_mcp[stack_network(project, "mcp")]["IPAddress"]
    relay_pid = str(docker.main_pid(stack_containers["gateway-relay"].id))
    # From inside the relay's network namespace (it has no interpreter to probe from).
    result = docker.run(
        "nsenter -t %s -n python3 -c %s %s %s",
        relay_pid,
        PROBE_PRELUDE + textwrap.dedent(CONNECT),
        address,
        str(SERVER_PORT),
    )
    data = json.loads(result.stdout.strip().splitlines()[-1])
    assert data["connected"] is False
    assert data["error"] in UNREACHABLE


@pytest.mark.control("NET-01", "behaviour")
@pytest.mark.parametrize("address", ["127.0.0.1", "::1"])
def test_host_cannot_call_the_unauthenticated_server_directly(
    docker: DockerHost, qc_mcp: Container, address: str
) -> None:
    assert not docker.connects(address, SERVER_PORT)


@pytest.mark.control("NET-02", "config")
@pytest.mark.parametrize("service", CONFINED_CONFIG)
def test_every_network_of_the_service_is_internal(
    docker: DockerHost, stack_containers: StackContainers, service: str
) -> None:
    for name in network_names(stack_containers[service]):
        assert docker.inspect("network", name)["Internal"] is True, f"{name} has a route out"


@pytest.mark.control("NET-02", "config")
@pytest.mark.parametrize("service", CONFINED_CONFIG)
def test_no_network_of_the_service_has_ipv6(
    docker: DockerHost, stack_containers: StackContainers, service: str
) -> None:
    for name in network_names(stack_containers[service]):
        assert docker.inspect("network", name)["EnableIPv6"] is False, f"{name} has IPv6"


@pytest.mark.control("NET-02", "behaviour")
@pytest.mark.parametrize("service", CONFINED_BEHAVIOUR)
def test_service_cannot_reach_a_canary_outside_the_stack_over_tcp(
    docker: DockerHost, stack_containers: StackContainers, published_canary: Canary, service: str
) -> None:
    address, port = published_canary.address, published_canary.port
    assert docker.connects(address, port, wait_seconds=5), "the canary itself is not up"
    result = probe(docker, stack_containers[service], CONNECT, address, str(port))
    assert result.data["connected"] is False
    assert result.data["error"] in UNREACHABLE


@pytest.mark.control("NET-02", "behaviour")
@pytest.mark.parametrize("service", CONFINED_BEHAVIOUR)
def test_service_cannot_reach_a_canary_outside_the_stack_over_udp(
    docker: DockerHost,
    stack_containers: StackContainers,
    published_udp_canary: Canary,
    service: str,
) -> None:
    canary = published_udp_canary
    result = probe(docker, stack_containers[service], UDP_SEND, canary.address, str(canary.port))
    assert result.data["answered"] is False
    assert result.data["error"] in UNREACHABLE


@pytest.mark.control("NET-02", "behaviour")
def test_server_cannot_reach_a_canary_over_ipv6(
    docker: DockerHost, qc_mcp: Container, canary_network: dict[str, Any], project: str
) -> None:
    name = f"{project}-ipv6-canary"
    start_canary(docker, name, qc_mcp.attrs["Image"], canary_network["Name"], 8080)
    try:
        address = docker.inspect("container", name)["NetworkSettings"]["Networks"][
            canary_network["Name"]
        ]["GlobalIPv6Address"]
        assert address and docker.connects(address, 8080, wait_seconds=10), "canary not up"
        result = docker.probe(qc_mcp.id, CONNECT, address, "8080")
        assert result.data["connected"] is False
        assert result.data["error"] in UNREACHABLE
    finally:
        docker.run("docker rm -f %s", name)


@pytest.mark.control("NET-02", "behaviour")
@pytest.mark.parametrize("service", CONFINED_BEHAVIOUR)
def test_service_cannot_reach_the_proxys_outside_network_directly(
    docker: DockerHost, stack_containers: StackContainers, outside_canary: Canary, service: str
) -> None:
    canary = outside_canary
    result = probe(docker, stack_containers[service], CONNECT, canary.address, str(canary.port))
    assert result.data["connected"] is False
    assert result.data["error"] in UNREACHABLE


@pytest.mark.control("NET-03", "config")
@pytest.mark.parametrize("service", CONFINED_CONFIG)
def test_internal_network_has_no_address_on_the_host(
    docker: DockerHost, stack_containers: StackContainers, service: str
) -> None:
    for name in network_names(stack_containers[service]):
        network = docker.inspect("network", name)
        assert network["Options"].get("com.docker.network.bridge.inhibit_ipv4") == "true"
        gateway = ipv4_gateway(network)
        addresses = docker.check("ip -o -4 addr show")
        assert f" {gateway}/" not in addresses, f"the host holds {gateway} on network {name}"


@pytest.mark.control("NET-03", "behaviour")
@pytest.mark.parametrize("service", CONFINED_BEHAVIOUR)
def test_service_cannot_reach_services_on_the_docker_host(
    docker: DockerHost, stack_containers: StackContainers, host_canary: int, service: str
) -> None:
    container = stack_containers[service]
    for name in network_names(container):
        gateway = ipv4_gateway(docker.inspect("network", name))
        result = probe(docker, container, CONNECT, gateway, str(host_canary))
        assert result.data["connected"] is False, f"reached the host through {gateway} ({name})"
