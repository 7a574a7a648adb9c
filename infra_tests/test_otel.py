"""The otel-collector image run hardened: it starts, answers its health check, and redacts."""

from __future__ import annotations

import json
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from infra_tests.conftest import image_files
from infra_tests.dockerhost import DockerHost
from stack.build.otelcol import load_manifest, manifest_listing, parse_components
from stack.settings import Settings
from stack.testdata import CANARY_API_TOKEN, CANARY_BROKERAGE_PASSWORD

COLLECTOR_UID = "10006:10006"
BASIC = "Basic OTAwNDE3OmFiY2RlZg=="  # base64("900417:abcdef"), shaped like QuantConnect's


@dataclass(frozen=True)
class Collector:
    """A collector container the test started, on an internal network of its own."""

    name: str
    network: str
    volume: str
    client_image: str


@pytest.fixture(scope="module")
def collector(docker: DockerHost, settings: Settings) -> Iterator[Collector]:
    """The otel-collector image run the way the stack will run it: read-only root, every
    capability dropped, no-new-privileges, its own uid, limits, its data on a named volume, on
    an internal network (no route out). Leftovers of an earlier run are removed first."""
    prefix = f"{settings.test_project_name}-otelcol"
    found = Collector(
        name=prefix,
        network=f"{prefix}-net",
        volume=f"{prefix}-data",
        client_image=settings.image("qc-mcp"),
    )

    def remove() -> None:
        docker.run("docker rm -f %s", found.name)
        docker.run("docker volume rm -f %s", found.volume)
        docker.run("docker network rm %s", found.network)

    remove()
    docker.check("docker network create --internal --label qcstack.test=otel %s", found.network)
    docker.check("docker volume create --label qcstack.test=otel %s", found.volume)
    docker.check(
        "docker run -d --name %s --label qcstack.test=otel --network %s --network-alias "
        "otel-collector --read-only --cap-drop ALL --security-opt no-new-privileges "
        "--memory 128m --memory-swap 128m --cpus 0.5 --pids-limit 64 --ulimit nofile=1024:1024 "
        "--init -v %s:/var/lib/otelcol %s",
        found.name,
        found.network,
        f"{found.volume}",
        settings.image("otel-collector"),
    )
    try:
        yield found
    finally:
        remove()


def wait_healthy(docker: DockerHost, name: str, seconds: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        state: dict[str, Any] = docker.inspect("container", name)["State"]
        if state.get("Health", {}).get("Status") == "healthy" or not state["Running"]:
            return state
        if time.monotonic() > deadline:
            return state
        time.sleep(1)


def python_in(docker: DockerHost, collector: Collector, script: str, *mounts: str) -> Any:
    """Runs a Python script in a throwaway client container on the collector's network."""
    volumes = "".join(f" -v {m}" for m in mounts)
    return docker.run(
        f"docker run --rm --network %s --user {COLLECTOR_UID} --read-only --cap-drop ALL "
        f"--security-opt no-new-privileges{volumes} --entrypoint /usr/bin/python3 %s -c %s",
        collector.network,
        collector.client_image,
        textwrap.dedent(script),
    )


def test_collector_runs_hardened_and_answers_its_health_check(
    docker: DockerHost, collector: Collector
) -> None:
    state = wait_healthy(docker, collector.name)
    assert state["Running"], docker.run("docker logs %s", collector.name).stderr[-2000:]
    assert state["Health"]["Status"] == "healthy", state["Health"]
    attrs = docker.inspect("container", collector.name)
    host = attrs["HostConfig"]
    assert attrs["Config"]["User"] == COLLECTOR_UID
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"]
    assert "no-new-privileges" in host["SecurityOpt"]
    probe = docker.run(
        "docker exec %s /usr/local/bin/healthcheck http://127.0.0.1:13133/ 200", collector.name
    )
    assert probe.rc == 0, probe.stderr
    status = docker.check("cat /proc/%s/status", str(attrs["State"]["Pid"]))
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    assert fields["Uid"].split()[0] == "10006"
    assert fields["CapEff"].strip() == "0000000000000000"
    assert fields["NoNewPrivs"].strip() == "1"


def test_collector_image_has_no_shell(docker: DockerHost, collector: Collector) -> None:
    for shell in ("/bin/sh", "/bin/bash", "sh"):
        result = docker.run("docker exec %s %s -c true", collector.name, shell)
        assert result.rc != 0, f"{shell} ran in the collector"


IMAGE_FILES = {
    "/etc/otelcol/collector.yaml",
    "/etc/otelcol/export-otlphttp.yaml",
    "/etc/ssl/certs/ca-certificates.crt",
    "/usr/local/bin/healthcheck",
    "/usr/local/bin/otelcol-qcstack",
}
"""Every regular file of the image: two static binaries, the configs and the CA bundle."""
DOCKER_FILES = {"/.dockerenv", "/dev/console", "/etc/hostname", "/etc/hosts", "/etc/resolv.conf"}
"""What Docker itself puts into any container's filesystem."""


def test_collector_image_holds_only_its_files_owned_by_root_but_its_data_folder(
    docker: DockerHost, settings: Settings
) -> None:
    entries = image_files(docker, settings.image("otel-collector"))
    regular = {e.path for e in entries if e.mode.startswith("-")} - DOCKER_FILES
    assert regular == IMAGE_FILES
    assert not [e.path for e in entries if e.mode[3] in "sS" or e.mode[6] in "sS"]  # no s-bits
    owned = {e.path: e.owner for e in entries if e.owner != "0/0"}
    assert owned == {"/var/lib/otelcol": "10006/10006"}
    assert not [e.path for e in entries if e.mode[8] == "w" and e.mode[0] != "l"]


def test_collector_in_the_image_holds_exactly_the_manifest_components(
    docker: DockerHost, settings: Settings
) -> None:
    listing = docker.check(
        "docker run --rm --network none --read-only --cap-drop ALL "
        "--security-opt no-new-privileges %s components",
        settings.image("otel-collector"),
    )
    manifest = load_manifest(settings.repo_root / "otel" / "manifest.yaml")
    assert parse_components(listing) == manifest_listing(manifest)


def test_health_check_is_not_reachable_from_the_network(
    docker: DockerHost, collector: Collector
) -> None:
    result = python_in(
        docker,
        collector,
        """
        import socket
        for port in (13133, 4318):
            s = socket.socket()
            s.settimeout(5)
            print(port, s.connect_ex(("otel-collector", port)))
        """,
    )
    assert result.rc == 0, result.stderr
    assert "13133 0" not in result.stdout and "4318 0" in result.stdout


def span_with_canaries() -> dict[str, Any]:
    def attr(key: str, value: Any) -> dict[str, Any]:
        return {"key": key, "value": value}

    brokerage = {"id": "InteractiveBrokersBrokerage", "ib-password": CANARY_BROKERAGE_PASSWORD}
    arguments = json.dumps({"projectId": 1, "brokerage": brokerage})
    span = {
        "traceId": "0af7651916cd43dd8448eb211c80319c",
        "spanId": "b7ad6b7169203331",
        "name": "tools/call create_live_algorithm",
        "kind": 2,
        "startTimeUnixNano": "1764000000000000000",
        "endTimeUnixNano": "1764000001000000000",
        "attributes": [
            attr("mcp.method.name", {"stringValue": "tools/call"}),
            attr("gen_ai.tool.name", {"stringValue": "create_live_algorithm"}),
            attr("http.request.header.authorization", {"stringValue": BASIC}),
            attr("quantconnect.api_token", {"stringValue": CANARY_API_TOKEN}),
            attr("gen_ai.tool.call.arguments", {"stringValue": arguments}),
            attr("error.message", {"stringValue": f"upstream refused Authorization: {BASIC}"}),
        ],
        "events": [
            {
                "timeUnixNano": "1764000000500000000",
                "name": "brokerage",
                "attributes": [attr("ib-password", {"stringValue": CANARY_BROKERAGE_PASSWORD})],
            }
        ],
    }
    resource = {"attributes": [attr("service.name", {"stringValue": "gateway"})]}
    return {
        "resourceSpans": [
            {"resource": resource, "scopeSpans": [{"scope": {"name": "t"}, "spans": [span]}]}
        ]
    }


def test_span_with_canary_secrets_comes_out_of_the_file_exporter_redacted(
    docker: DockerHost, collector: Collector
) -> None:
    assert wait_healthy(docker, collector.name)["Health"]["Status"] == "healthy"
    sent = python_in(
        docker,
        collector,
        f"""
        import urllib.request
        request = urllib.request.Request(
            "http://otel-collector:4318/v1/traces",
            data={json.dumps(json.dumps(span_with_canaries()))}.encode(),
            headers={{"Content-Type": "application/json"}},
        )
        print(urllib.request.urlopen(request, timeout=10).status)
        """,
    )
    assert sent.rc == 0 and sent.stdout.strip() == "200", sent.stderr[-2000:]
    read = None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        read = python_in(
            docker,
            collector,
            """
            import os
            path = "/data/traces.jsonl"
            print(open(path).read() if os.path.exists(path) else "")
            """,
            f"{collector.volume}:/data:ro",
        )
        if read.rc == 0 and read.stdout.strip():
            break
        time.sleep(1)
    assert read is not None and read.rc == 0 and read.stdout.strip(), "no span was written"
    written = str(read.stdout)
    for secret in (CANARY_API_TOKEN, CANARY_BROKERAGE_PASSWORD, BASIC.split()[1]):
        assert secret not in written
    span = json.loads(written.splitlines()[0])["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    kept = {a["key"]: a["value"].get("stringValue") for a in span["attributes"]}
    assert kept["gen_ai.tool.name"] == "create_live_algorithm"
    assert kept["mcp.method.name"] == "tools/call"
    masked = "****"
    assert kept["http.request.header.authorization"] == masked
    assert kept["quantconnect.api_token"] == masked
    assert '"projectId": 1' in kept["gen_ai.tool.call.arguments"]
    assert span["events"][0]["attributes"][0]["value"] == {"stringValue": masked}
