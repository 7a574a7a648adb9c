"""NET controls: nothing outside the stack reaches qc-mcp, and qc-mcp reaches nothing outside."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from typing import Any

import pytest

from infra_tests.conftest import Container, start_canary
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
UNREACHABLE = (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ECONNREFUSED, "timeout")


def network_names(qc_mcp: Container) -> list[str]:
    return sorted(qc_mcp.attrs["NetworkSettings"]["Networks"])


@pytest.fixture(scope="module")
def published_canary(
    docker: DockerHost, canary_network: dict[str, Any], project: str, qc_mcp: Container
) -> Iterator[tuple[str, int]]:
    """A canary on the tests' own network, published on that network's host-side address only."""
    gateway = canary_network["IPAM"]["Config"][0]["Gateway"]
    name = f"{project}-published-canary"
    start_canary(
        docker,
        name,
        qc_mcp.attrs["Image"],
        canary_network["Name"],
        8080,
        publish=f"{gateway}::8080",
    )
    port = int(docker.check("docker port %s 8080/tcp", name).strip().rsplit(":", 1)[1])
    yield gateway, port
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


@pytest.mark.control("NET-02", "behaviour")
def test_server_cannot_reach_a_canary_outside_the_stack(
    docker: DockerHost, qc_mcp: Container, published_canary: tuple[str, int]
) -> None:
    address, port = published_canary
    assert docker.connects(address, port, wait_seconds=5), "the canary itself is not up"
    result = docker.probe(qc_mcp.id, CONNECT, address, str(port))
    assert result.data["connected"] is False
    assert result.data["error"] in UNREACHABLE


@pytest.mark.control("NET-03", "config")
def test_internal_network_has_no_address_on_the_host(docker: DockerHost, qc_mcp: Container) -> None:
    for name in network_names(qc_mcp):
        network = docker.inspect("network", name)
        assert network["Options"].get("com.docker.network.bridge.inhibit_ipv4") == "true"
        gateway = network["IPAM"]["Config"][0]["Gateway"]
        addresses = docker.check("ip -o -4 addr show")
        assert f" {gateway}/" not in addresses, f"the host holds {gateway} on network {name}"


@pytest.mark.control("NET-03", "behaviour")
def test_server_cannot_reach_services_on_the_docker_host(
    docker: DockerHost, qc_mcp: Container, host_canary: int
) -> None:
    for name in network_names(qc_mcp):
        gateway = docker.inspect("network", name)["IPAM"]["Config"][0]["Gateway"]
        result = docker.probe(qc_mcp.id, CONNECT, gateway, str(host_canary))
        assert result.data["connected"] is False, f"reached the host through {gateway} ({name})"
