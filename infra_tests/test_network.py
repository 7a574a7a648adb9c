"""NET controls: nothing outside the stack reaches qc-mcp, and qc-mcp reaches nothing outside."""

from __future__ import annotations

import errno
import json
from collections.abc import Iterator
from ipaddress import IPv4Network
from typing import Any

import pytest

from infra_tests.conftest import Canary, Container, start_canary
from infra_tests.dockerhost import DockerHost

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


def network_names(qc_mcp: Container) -> list[str]:
    return sorted(qc_mcp.attrs["NetworkSettings"]["Networks"])


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
def test_no_port_is_published(qc_mcp: Container) -> None:
    assert not qc_mcp.host_config["PortBindings"]
    assert not any(qc_mcp.attrs["NetworkSettings"]["Ports"].values() or [None])


@pytest.mark.control("NET-01", "behaviour")
@pytest.mark.parametrize("address", ["127.0.0.1", "::1"])
def test_host_cannot_call_the_unauthenticated_server_directly(
    docker: DockerHost, qc_mcp: Container, address: str
) -> None:
    assert not docker.connects(address, SERVER_PORT)


@pytest.mark.control("NET-02", "config")
def test_every_network_of_the_server_is_internal(docker: DockerHost, qc_mcp: Container) -> None:
    for name in network_names(qc_mcp):
        assert docker.inspect("network", name)["Internal"] is True, f"{name} has a route out"


@pytest.mark.control("NET-02", "config")
def test_no_network_of_the_server_has_ipv6(docker: DockerHost, qc_mcp: Container) -> None:
    for name in network_names(qc_mcp):
        assert docker.inspect("network", name)["EnableIPv6"] is False, f"{name} has IPv6"


@pytest.mark.control("NET-02", "behaviour")
def test_server_cannot_reach_a_canary_outside_the_stack_over_tcp(
    docker: DockerHost, qc_mcp: Container, published_canary: Canary
) -> None:
    address, port = published_canary.address, published_canary.port
    assert docker.connects(address, port, wait_seconds=5), "the canary itself is not up"
    result = docker.probe(qc_mcp.id, CONNECT, address, str(port))
    assert result.data["connected"] is False
    assert result.data["error"] in UNREACHABLE


@pytest.mark.control("NET-02", "behaviour")
def test_server_cannot_reach_a_canary_outside_the_stack_over_udp(
    docker: DockerHost, qc_mcp: Container, published_udp_canary: Canary
) -> None:
    canary = published_udp_canary
    result = docker.probe(qc_mcp.id, UDP_SEND, canary.address, str(canary.port))
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
def test_server_cannot_reach_the_proxys_outside_network_directly(
    docker: DockerHost, qc_mcp: Container, outside_canary: Canary
) -> None:
    result = docker.probe(qc_mcp.id, CONNECT, outside_canary.address, str(outside_canary.port))
    assert result.data["connected"] is False
    assert result.data["error"] in UNREACHABLE


@pytest.mark.control("NET-03", "config")
def test_internal_network_has_no_address_on_the_host(docker: DockerHost, qc_mcp: Container) -> None:
    for name in network_names(qc_mcp):
        network = docker.inspect("network", name)
        assert network["Options"].get("com.docker.network.bridge.inhibit_ipv4") == "true"
        gateway = ipv4_gateway(network)
        addresses = docker.check("ip -o -4 addr show")
        assert f" {gateway}/" not in addresses, f"the host holds {gateway} on network {name}"


@pytest.mark.control("NET-03", "behaviour")
def test_server_cannot_reach_services_on_the_docker_host(
    docker: DockerHost, qc_mcp: Container, host_canary: int
) -> None:
    for name in network_names(qc_mcp):
        gateway = ipv4_gateway(docker.inspect("network", name))
        result = docker.probe(qc_mcp.id, CONNECT, gateway, str(host_canary))
        assert result.data["connected"] is False, f"reached the host through {gateway} ({name})"
