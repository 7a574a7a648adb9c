"""Runs the trigger scenarios (falco/scenarios/) against a stack and builds their Falco events."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from infra_tests.conftest import Canary, StackContainers
from infra_tests.dockerhost import DockerHost
from stack.falco.events import ContainerIdentity, falco_event
from stack.falco.scenarios import Scenario, load_scenarios

SCENARIOS = {scenario.slug: scenario for scenario in load_scenarios()}
CONTEXT_SERVICES = ("qc-mcp", "gateway", "egress-proxy")
"""The containers a scenario may address by service (the host-run ones reach in through them)."""


@dataclass(frozen=True)
class ScenarioRun:
    """What a scenario reported, and the Falco event of each syscall it attempted."""

    scenario: Scenario
    report: dict[str, Any]
    events: list[dict[str, object]]

    @property
    def attempts(self) -> list[dict[str, Any]]:
        return list(self.report["attempts"])

    def results(self) -> dict[str, str]:
        """Each attempt's result by what it was aimed at (its path, address:port or syscall)."""
        return {target(attempt): attempt["result"] for attempt in self.attempts}


def target(attempt: dict[str, Any]) -> str:
    if "path" in attempt:
        return str(attempt["path"])
    if "address" in attempt:
        return f"{attempt['address']}:{attempt['port']}"
    return str(attempt["syscall"])


def run_scenario(
    docker: DockerHost, containers: StackContainers, scenario: Scenario, canary: Canary
) -> ScenarioRun:
    """Runs the scenario where it acts (inside its service, or on the Docker host) and reads the
    one JSON line it prints."""
    context = json.dumps(
        {
            "containers": {service: containers[service].id for service in CONTEXT_SERVICES},
            "canary": {"name": canary.name, "address": canary.address, "port": canary.port},
        }
    )
    container = containers[scenario.service]
    if scenario.runs == "container":
        command = f"docker exec {container.id} /usr/bin/python3 -c %s %s"
    else:
        command = "python3 -c %s %s"
    result = docker.run(command, scenario.source(), context)
    lines = [line for line in str(result.stdout).splitlines() if line.startswith("{")]
    assert result.rc == 0 and lines, (
        f"scenario {scenario.slug} did not finish ({result.rc}): {str(result.stderr)[-1500:]}"
    )
    report: dict[str, Any] = json.loads(lines[-1])
    assert report["attempts"], f"scenario {scenario.slug} attempted nothing"
    identity = ContainerIdentity.from_inspect(container.attrs)
    events = [falco_event(attempt, identity) for attempt in report["attempts"]]
    return ScenarioRun(scenario, report, events)
