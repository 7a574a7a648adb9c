"""DET controls: each Falco rule is in the rules file as the stack needs it, and its trigger
scenario, run against the hardened stack, is stopped by a prevention control where one exists
and is matched by the rule's condition, evaluated on the event of what really happened.

No Falco runs here (none can be had on these machines): the rules are evaluated by qcstack's own
evaluator (stack/falco/evaluate.py). infra_tests/test_falco_host.py runs the same scenarios where
Falco runs and reads the alerts it raised.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from infra_tests.conftest import Canary, StackContainers
from infra_tests.dockerhost import DockerHost
from infra_tests.scenarios import SCENARIOS, ScenarioRun, run_scenario
from stack.falco.events import image_repository
from stack.falco.images import ALL_IMAGES, list_name
from stack.falco.rules import RuleSet
from stack.falco.scenarios import Scenario

PRIORITIES = {
    "DET-01": "CRITICAL",
    "DET-02": "WARNING",
    "DET-03": "CRITICAL",
    "DET-04": "CRITICAL",
    "DET-05": "CRITICAL",
    "DET-06": "CRITICAL",
    "DET-07": "WARNING",
}
"""COMMON decision: CRITICAL where a prevention control should have made it impossible; WARNING
for write attempts and listeners, which a misconfiguration can cause."""
NO_ROUTE = ("ENETUNREACH", "EHOSTUNREACH", "EINPROGRESS")
"""How a connect() from an internal network ends: no route, or no answer before the timeout."""


CONFIG_MARKS = {
    "unexpected_process": pytest.mark.control("DET-01", "config"),
    "write_outside_tmpfs": pytest.mark.control("DET-02", "config"),
    "secret_read_by_another_process": pytest.mark.control("DET-03", "config"),
    "process_environment_read": pytest.mark.control("DET-03", "config"),
    "qc_mcp_connection_past_the_proxy": pytest.mark.control("DET-04", "config"),
    "proxy_connection_off_port_443": pytest.mark.control("DET-04", "config"),
    "gateway_connection_off_its_upstreams": pytest.mark.control("DET-04", "config"),
    "denied_syscall_attempted": pytest.mark.control("DET-05", "config"),
    "execution_from_memory_or_tmpfs": pytest.mark.control("DET-06", "config"),
    "new_listening_socket": pytest.mark.control("DET-07", "config"),
}
"""Each scenario's config mark, spelled out so the control registry's check can read it."""


def per_rule() -> list[Any]:
    """One parameter per scenario in falco/scenarios/, marked with its rule's control."""
    unmarked = sorted(set(SCENARIOS) - set(CONFIG_MARKS))
    assert not unmarked, f"add the config marks of {unmarked} to CONFIG_MARKS"
    params = []
    for slug, scenario in SCENARIOS.items():
        mark = CONFIG_MARKS[slug]
        assert mark.args[0] == scenario.control, f"{slug}: CONFIG_MARKS says {mark.args[0]}"
        params.append(pytest.param(scenario, id=slug, marks=mark))
    return params


@pytest.fixture(scope="module")
def running_repositories(docker: DockerHost, project: str) -> dict[str, str]:
    """compose service -> image repository of every running container of the stack under test
    (the test stack's API double too: it runs qc-mcp's image)."""
    ids = docker.check(
        "docker ps -q --no-trunc --filter %s", f"label=com.docker.compose.project={project}"
    ).split()
    assert ids, f"no running container in compose project {project}"
    found = {}
    for container_id in ids:
        attrs = docker.inspect("container", container_id)
        service = attrs["Config"]["Labels"]["com.docker.compose.service"]
        found[service] = image_repository(str(attrs["Config"]["Image"]))
    return found


@pytest.mark.parametrize("scenario", per_rule())
def test_rule_is_enabled_with_its_control_priority_and_tags(
    falco_rules: RuleSet, scenario: Scenario
) -> None:
    assert scenario.rule in falco_rules.rules, f"the rules file has no rule {scenario.rule!r}"
    rule = falco_rules.rules[scenario.rule]
    assert rule.enabled, f"{rule.name} is disabled"
    assert rule.control == scenario.control
    assert {"qcstack", scenario.control} <= set(rule.tags)
    assert rule.priority.upper() == PRIORITIES[scenario.control]


@pytest.mark.parametrize("scenario", per_rule())
def test_rule_is_keyed_on_the_running_stacks_image_repositories(
    falco_rules: RuleSet, running_repositories: dict[str, str], scenario: Scenario
) -> None:
    assert scenario.rule in falco_rules.rules, f"the rules file has no rule {scenario.rule!r}"
    running = running_repositories
    assert set(running.values()) <= set(falco_rules.lists[ALL_IMAGES]), running
    service_list = list_name(scenario.service)
    assert running[scenario.service] in falco_rules.lists[service_list]
    condition = falco_rules.rules[scenario.rule].condition
    assert "qcstack_container" in condition or service_list in condition, condition


@pytest.mark.parametrize("slug", sorted(SCENARIOS))
def test_every_scenario_has_its_behaviour_test(slug: str) -> None:
    # The behaviour tests below are one per attack, by name; none may be forgotten.
    assert f'"{slug}"' in Path(__file__).read_text(), f"no behaviour test runs {slug}"


def test_every_qcstack_rule_has_a_scenario(falco_rules: RuleSet) -> None:
    ours = [rule for rule in falco_rules.rules.values() if "qcstack" in rule.tags]
    assert ours, "no rule is tagged qcstack"
    assert [rule.name for rule in ours if rule.slug not in SCENARIOS] == []


def detected(falco_rules: RuleSet, run: ScenarioRun) -> None:
    """(b) Falco would record it: the rule matches the event of every attempt."""
    missed = [e for e in run.events if not falco_rules.matches(run.scenario.rule, e)]
    assert not missed, f"{run.scenario.rule!r} does not match: " + "; ".join(
        f"{e['evt.type']} res={e['evt.res']} proc={e['proc.name']}" for e in missed
    )


Run = Callable[[str], ScenarioRun]


@pytest.fixture
def run(docker: DockerHost, stack_containers: StackContainers, outside_canary: Canary) -> Run:
    """Runs a scenario by its slug against the stack under test."""
    return lambda slug: run_scenario(docker, stack_containers, SCENARIOS[slug], outside_canary)


@pytest.mark.control("DET-01", "behaviour")
def test_shell_package_manager_and_network_tool_in_qc_mcp_are_prevented_and_detected(
    run: Run, falco_rules: RuleSet
) -> None:
    result = run("unexpected_process")
    # IMG-04: the image holds none of them.
    assert set(result.results().values()) == {"ENOENT"}, result.results()
    detected(falco_rules, result)


@pytest.mark.control("DET-02", "behaviour")
def test_code_planted_outside_the_tmpfs_is_prevented_and_detected(
    run: Run, falco_rules: RuleSet
) -> None:
    result = run("write_outside_tmpfs")
    assert set(result.results().values()) == {"EROFS"}, result.results()  # RUN-01
    detected(falco_rules, result)


@pytest.mark.control("DET-03", "behaviour")
def test_api_token_read_by_a_second_process_is_detected(run: Run, falco_rules: RuleSet) -> None:
    result = run("secret_read_by_another_process")
    # No prevention: a process with the server's uid may read the server's 0400 file. What
    # holds is that only that uid may (SEC-02), and the rule sees the read.
    assert result.results() == {"/run/secrets/qc_api_token": "SUCCESS"}
    assert result.report["file"] == {"mode": "0o400", "uid": 10001}
    assert result.report["bytes_read"] > 0
    detected(falco_rules, result)


@pytest.mark.control("DET-03", "behaviour")
def test_server_environment_read_is_detected_and_holds_no_credential(
    run: Run, falco_rules: RuleSet
) -> None:
    result = run("process_environment_read")
    # No prevention for the server's own uid; what holds is SEC-01: no credential in there.
    assert list(result.results().values()) == ["SUCCESS"]
    assert result.report["credential_variables"] == []
    detected(falco_rules, result)


@pytest.mark.control("DET-04", "behaviour")
@pytest.mark.parametrize(
    "slug", ["qc_mcp_connection_past_the_proxy", "gateway_connection_off_its_upstreams"]
)
def test_connection_around_the_proxy_is_prevented_and_detected(
    run: Run, falco_rules: RuleSet, slug: str
) -> None:
    # qc-mcp past the proxy; the gateway, which holds the brokerage secrets, anywhere outside.
    result = run(slug)
    assert result.report["connected"] is False  # NET-02
    assert set(result.results().values()) <= set(NO_ROUTE), result.results()
    detected(falco_rules, result)


@pytest.mark.control("DET-04", "behaviour")
def test_proxy_tunnel_off_port_443_is_prevented_and_detected(
    run: Run, falco_rules: RuleSet
) -> None:
    result = run("proxy_connection_off_port_443")
    # NET-04: squid refuses before it connects, so here Falco would see no connect at all; the
    # rule is held to the connection squid was asked for, as squid would make it.
    assert " 403 " in result.report["proxy_status"]
    assert [attempt["made"] for attempt in result.attempts] == [False]
    detected(falco_rules, result)


@pytest.mark.control("DET-05", "behaviour")
def test_escape_syscalls_are_prevented_and_detected(run: Run, falco_rules: RuleSet) -> None:
    result = run("denied_syscall_attempted")
    assert result.results() == dict.fromkeys(
        ["ptrace", "unshare", "setns", "mount", "bpf"], "EPERM"
    )  # RUN-05
    detected(falco_rules, result)


@pytest.mark.control("DET-06", "behaviour")
def test_dropped_and_fileless_payloads_are_prevented_and_detected(
    run: Run, falco_rules: RuleSet
) -> None:
    result = run("execution_from_memory_or_tmpfs")
    # RUN-02: /tmp is noexec; RUN-05: memfd_create is not in the allow-list.
    assert result.results() == {"/tmp/dropped": "EACCES", "payload": "EPERM"}
    detected(falco_rules, result)


@pytest.mark.control("DET-07", "behaviour")
def test_back_door_listener_in_qc_mcp_is_detected_and_unreachable_from_outside(
    run: Run, falco_rules: RuleSet, docker: DockerHost, stack_containers: StackContainers
) -> None:
    result = run("new_listening_socket")
    # No prevention for listen() itself (the server listens); what holds is that nothing
    # outside the stack reaches it: no published port (NET-01), internal networks (NET-02).
    assert list(result.results().values()) == ["SUCCESS"]
    qc_mcp = stack_containers["qc-mcp"]
    assert not qc_mcp.host_config["PortBindings"]
    for network in qc_mcp.attrs["NetworkSettings"]["Networks"]:
        assert docker.inspect("network", network)["Internal"] is True, network
    detected(falco_rules, result)
