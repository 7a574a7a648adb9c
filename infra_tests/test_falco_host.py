"""Where Falco runs (a Docker host with the falco binary and its service active, such as a VM
deployed by stack/deploy): every trigger scenario, run against the deployed stack, raises its
rule's alert at the responder, which records it in its hash-chained audit log.

On a host without Falco every test here skips and says so: no Falco binary or image can be had
on the machines this project is developed on, and Falco is never imitated.
infra_tests/test_detection.py proves the rules' conditions and the prevention on any host.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from infra_tests.conftest import Canary, Container, StackContainers, responder_audit
from infra_tests.dockerhost import DockerHost
from infra_tests.scenarios import SCENARIOS, run_scenario
from stack.falco.scenarios import Scenario

FALCO_UNITS = ("falco-modern-bpf", "falco")
"""The systemd units Falco's packages install; the deploy runs the modern eBPF one (HOST-07)."""
ALERT_WAIT_SECONDS = 20.0


@pytest.fixture(scope="module")
def falco_host(docker: DockerHost) -> str:
    """The name of Falco's running unit on the Docker host; skips where Falco is not installed,
    fails where it is installed but not running."""
    if not docker.host.exists("falco"):
        pytest.skip(
            "Falco is not installed on the Docker host under test (no `falco` binary there), so "
            "no rule can fire; run this suite against a VM deployed with Falco (bin/qcstack "
            "deploy with falco=repository or package; the test VM here deploys with Falco off). "
            "The rules are checked without Falco in infra_tests/test_detection.py"
        )
    running = [unit for unit in FALCO_UNITS if docker.host.service(unit).is_running]
    assert running, f"the falco binary is installed but none of {FALCO_UNITS} is running"
    return running[0]


@pytest.fixture(scope="module")
def responder(falco_host: str, stack_containers: StackContainers) -> Container:
    return stack_containers["falco-responder"]


def alerts(docker: DockerHost, responder: Container, rule: str) -> list[dict[str, Any]]:
    entries = responder_audit(docker, responder)
    return [e for e in entries if e.get("event") == "falco-alert" and e.get("rule") == rule]


def wait_for_alerts(
    docker: DockerHost, responder: Container, rule: str, before: int
) -> list[dict[str, Any]]:
    """The rule's alerts recorded after the first `before`, waiting a bounded time for one."""
    deadline = time.monotonic() + ALERT_WAIT_SECONDS
    while True:
        new = alerts(docker, responder, rule)[before:]
        if new or time.monotonic() >= deadline:
            return new
        time.sleep(0.5)


@pytest.mark.parametrize("scenario", list(SCENARIOS.values()), ids=list(SCENARIOS))
def test_scenario_raises_its_rules_alert_at_the_responder(
    responder: Container,  # first: where Falco is missing, nothing else is set up
    docker: DockerHost,
    stack_containers: StackContainers,
    outside_canary: Canary,
    scenario: Scenario,
) -> None:
    before = len(alerts(docker, responder, scenario.rule))
    run = run_scenario(docker, stack_containers, scenario, outside_canary)
    made = [attempt for attempt in run.attempts if attempt.get("made", True)]
    new = wait_for_alerts(docker, responder, scenario.rule, before)
    if not made:
        # The prevention stood before any syscall (squid refused the tunnel): nothing for Falco
        # to see, and an alert here would mean the attempt got through after all.
        assert new == [], f"{scenario.rule} fired for an attempt that was refused: {new}"
        return
    assert new, f"no {scenario.rule!r} alert reached the responder in {ALERT_WAIT_SECONDS:.0f} s"
    assert {"qcstack", scenario.control} <= set(new[0]["tags"])
