"""The trigger scenarios are well-formed, one per rule, and their attempts become Falco events."""

from __future__ import annotations

from pathlib import Path

import pytest

from stack.falco.events import ContainerIdentity, falco_event, image_repository
from stack.falco.rules import OUR_RULES, STABLE_RULES, load_rules
from stack.falco.scenarios import load_scenarios, read_scenario

QC_MCP = ContainerIdentity("a" * 64, "qcstack-test-qc-mcp-1", "qcstack/qc-mcp:local")
PYTHON = {
    "name": "python3",
    "exepath": "/usr/bin/python3.11",
    "argv": ["/usr/bin/python3", "-c", "x"],
    "uid": 10001,
}


def test_every_rule_of_ours_has_a_scenario_and_every_scenario_a_rule() -> None:
    rules = load_rules([STABLE_RULES, OUR_RULES]).rules.values()
    ours = {rule.slug for rule in rules if "qcstack" in rule.tags}
    assert {scenario.slug for scenario in load_scenarios()} == ours


def test_each_scenario_names_its_rule_and_control() -> None:
    rules = load_rules([STABLE_RULES, OUR_RULES]).rules
    for scenario in load_scenarios():
        assert scenario.rule in rules, scenario.rule
        assert rules[scenario.rule].control == scenario.control


def test_scenario_source_starts_with_the_prelude() -> None:
    scenario = load_scenarios()[0]
    assert scenario.source().startswith('"""Shared by every trigger scenario')
    compile(scenario.source(), scenario.slug, "exec")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('CONTROL = "DET-01"\nRULE = "qcstack unexpected process"\nSERVICE = "qc-mcp"\n', "RUNS"),
        (
            'CONTROL = "DET-01"\nRULE = "qcstack other"\nSERVICE = "qc-mcp"\nRUNS = "container"\n',
            "must be named other.py",
        ),
        (
            'CONTROL = "DET-01"\nRULE = "qcstack x"\nSERVICE = "qc-mcp"\nRUNS = "vm"\n',
            "use one of container, host",
        ),
    ],
)
def test_malformed_scenario_is_refused_with_what_to_fix(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "unexpected_process.py"
    if "qcstack x" in text:
        path = tmp_path / "x.py"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        read_scenario(path)


def test_empty_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no trigger scenarios"):
        load_scenarios(tmp_path)


@pytest.mark.parametrize(
    ("image", "repository"),
    [
        ("qcstack/qc-mcp:local", "qcstack/qc-mcp"),
        ("registry:5000/qcstack/qc-mcp", "registry:5000/qcstack/qc-mcp"),
        ("registry:5000/qcstack/qc-mcp:1.2@sha256:ab", "registry:5000/qcstack/qc-mcp"),
        ("qcstack/qc-mcp", "qcstack/qc-mcp"),
    ],
)
def test_image_repository_drops_tag_and_digest_only(image: str, repository: str) -> None:
    assert image_repository(image) == repository


def test_failed_open_keeps_the_path_in_fd_fields_but_has_no_descriptor() -> None:
    attempt = {
        "syscall": "openat",
        "result": "EROFS",
        "process": PYTHON,
        "path": "/app/x.py",
        "flags": "O_WRONLY|O_CREAT",
    }
    event = falco_event(attempt, QC_MCP)
    assert event["evt.res"] == "EROFS" and event["evt.rawres"] == -30
    assert event["evt.failed"] is True and event["evt.is_open_write"] is True
    assert event["fd.name"] == "/app/x.py" and event["fd.typechar"] == "f"
    assert "fd.num" not in event and "fd.type" not in event
    assert event["container.image.repository"] == "qcstack/qc-mcp"
    assert event["container.id"] == "a" * 12
    assert event["proc.cmdline"] == "python3 -c x"


def test_failed_exec_keeps_the_caller_and_successful_exec_becomes_the_program() -> None:
    child = {**PYTHON, "pname": "python3"}
    failed = falco_event(
        {"syscall": "execve", "result": "ENOENT", "process": child, "path": "/bin/sh"}, QC_MCP
    )
    assert failed["proc.name"] == "python3" and failed["evt.arg.filename"] == "/bin/sh"
    ran = falco_event(
        {
            "syscall": "execve",
            "result": "SUCCESS",
            "process": child,
            "path": "/usr/bin/python3",
            "exepath": "/usr/bin/python3.11",
        },
        QC_MCP,
    )
    assert ran["proc.exepath"] == "/usr/bin/python3.11" and ran["proc.pname"] == "python3"


def test_connect_carries_the_server_address_and_port() -> None:
    attempt = {
        "syscall": "connect",
        "result": "ENETUNREACH",
        "process": PYTHON,
        "address": "10.0.0.9",
        "port": 8080,
    }
    event = falco_event(attempt, QC_MCP)
    assert (event["fd.sip"], event["fd.sport"], event["fd.typechar"]) == ("10.0.0.9", 8080, "4")
    assert event["fd.connected"] is False


def test_unknown_errno_name_is_refused() -> None:
    attempt = {"syscall": "bpf", "result": "ENOTANERRNO", "process": PYTHON}
    with pytest.raises(ValueError, match="not an errno name"):
        falco_event(attempt, QC_MCP)
