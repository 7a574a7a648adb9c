"""Fixtures for the infra suites: the Docker host, the stack's containers, and the canaries."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import testinfra

from infra_tests.dockerhost import DockerHost
from stack.settings import Settings


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
def settings() -> Settings:
    return Settings()


@pytest.fixture(scope="session")
def docker(request: pytest.FixtureRequest, settings: Settings) -> DockerHost:
    hosts = request.config.getoption("hosts", default=None)
    spec = hosts.split(",")[0] if hosts else settings.test_hosts
    return DockerHost(testinfra.get_host(spec))


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


@pytest.fixture(scope="session")
def qc_mcp(docker: DockerHost, project: str) -> Container:
    container_id = docker.container_id(project, "qc-mcp")
    return Container(container_id, docker.inspect("container", container_id))


@pytest.fixture(scope="session")
def qc_mcp_image(docker: DockerHost, qc_mcp: Container) -> dict[str, Any]:
    return docker.inspect("image", qc_mcp.attrs["Image"])


@dataclass(frozen=True)
class TarEntry:
    mode: str
    owner: str
    path: str


@pytest.fixture(scope="session")
def qc_mcp_files(docker: DockerHost, qc_mcp: Container) -> list[TarEntry]:
    """Every file of qc-mcp's image, read from a stopped copy so the running one is untouched."""
    created = docker.check("docker create %s", qc_mcp.attrs["Image"]).strip()
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
def canary_network(docker: DockerHost, project: str) -> Iterator[dict[str, Any]]:
    """A network of the tests' own, with a route out, for canary servers."""
    name = f"{project}-canary"
    docker.run("docker network rm %s", name)
    docker.check("docker network create --label qcstack.test=canary %s", name)
    yield docker.inspect("network", name)
    docker.run("docker network rm %s", name)


def start_canary(
    docker: DockerHost, name: str, image: str, network: str, port: int, publish: str = ""
) -> str:
    """Starts a tiny HTTP server container that the tests own; returns its container id."""
    docker.run("docker rm -f %s", name)
    publish_args = f"-p {publish} " if publish else ""
    return docker.check(
        "docker run -d --rm --name %s --label qcstack.test=canary --network %s --read-only "
        "--cap-drop ALL --security-opt no-new-privileges --user 10003:10003 --pids-limit 32 "
        f"--memory 64m {publish_args}--entrypoint /usr/bin/python3 %s -m http.server %s",
        name,
        network,
        image,
        str(port),
    ).strip()


@pytest.fixture(scope="session")
def host_canary(docker: DockerHost, project: str, qc_mcp: Container) -> Iterator[int]:
    """A canary server on the Docker host's own network stack (a container with network=host).

    Anything listening on the host's addresses stands for the host's real services (SSH,
    local APIs); the tests aim only at this canary, on the gateway address of their own network.
    """
    port = 18081
    name = f"{project}-host-canary"
    start_canary(docker, name, qc_mcp.attrs["Image"], "host", port)
    assert docker.connects("127.0.0.1", port, wait_seconds=10), "the host canary did not start"
    yield port
    docker.run("docker rm -f %s", name)
