"""The compose file carries each control's ID at its key, and the mutation overrides are valid."""

from __future__ import annotations

import re
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import pytest
import yaml

from stack.compose import ComposeProject
from stack.controls import CONTROLS, Control
from stack.egress import HEALTHCHECK_COMMAND
from stack.mutation import mutable_controls, render_override
from stack.process import CommandError
from stack.settings import Settings

COMPOSE = Path(__file__).resolve().parent.parent / "compose" / "compose.yaml"
COMPOSE_CONTROLS = [c for c in CONTROLS if "compose/compose.yaml" in c.enforced]


class _TagLoader(yaml.SafeLoader):
    """Reads compose's !reset and !override tags."""


_TagLoader.add_multi_constructor(
    "!", lambda loader, suffix, node: {"tag": suffix, "node": node.value}
)


def qc_mcp_service() -> dict[str, Any]:
    service: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())["services"]["qc-mcp"]
    return service


@pytest.mark.parametrize("control", COMPOSE_CONTROLS, ids=lambda c: c.id)
def test_compose_names_each_control_where_it_is_enforced(control: Control) -> None:
    assert re.search(rf"#.*\b{control.id}\b", COMPOSE.read_text()), control.id


def test_compose_names_no_unknown_control() -> None:
    known = {c.id for c in CONTROLS}
    named = set(re.findall(r"#[^\n]*?\b([A-Z]{3}-\d{2})\b", COMPOSE.read_text()))
    assert named <= known, named - known


def test_server_publishes_no_port_and_mounts_no_volume() -> None:
    service = qc_mcp_service()
    assert "ports" not in service and "volumes" not in service
    assert "network_mode" not in service and "privileged" not in service


def test_server_gets_credentials_only_as_secret_files() -> None:
    service = qc_mcp_service()
    assert service["secrets"] == ["qc_user_id", "qc_api_token"]
    assert not any("QUANTCONNECT" in str(v) for v in (service.get("environment") or {}))


@pytest.mark.parametrize("control", mutable_controls(), ids=lambda c: c.id)
def test_mutation_override_is_valid_yaml_for_the_server(control: Control) -> None:
    text = render_override(control, Settings())
    document = yaml.load(text, Loader=_TagLoader)  # noqa: S506
    assert set(document) <= {"services", "networks", "configs"}
    assert not re.search(r"(?<!\$)\{[a-z_]+\}", text), "a placeholder was left unfilled"
    known = set(yaml.safe_load(COMPOSE.read_text())["services"])
    # A mutant changes the stack's own services, or adds a canary of the mutation check's own.
    assert set(document.get("services", {})) <= known | {"dns-canary"}


def test_proxy_health_check_is_the_one_the_policy_answers() -> None:
    service = yaml.safe_load(COMPOSE.read_text())["services"]["egress-proxy"]
    assert service["healthcheck"]["test"] == ["CMD", *HEALTHCHECK_COMMAND]


def test_gateway_gets_each_credential_as_a_separate_secret_file() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    assert compose["services"]["gateway"]["secrets"] == [
        "gateway_token",
        "gateway_admins",
        "gateway_responder_token",
        "gateway_brokerages",
    ]
    for name in ("gateway_admins", "gateway_responder_token", "gateway_brokerages"):
        assert compose["secrets"][name]["file"].endswith(f"}}/{name}")


def test_test_stacks_hold_live_deployments_for_a_person() -> None:
    test_stack = yaml.safe_load((COMPOSE.parent / "test.yaml").read_text())
    environment = test_stack["services"]["gateway"]["environment"]
    assert environment["QCSTACK_GATEWAY_PROFILE"] == "live"
    assert float(environment["QCSTACK_GATEWAY_APPROVAL_WAIT_SECONDS"]) >= 60


def test_export_to_a_backend_is_refused_while_the_collector_has_no_route_out(
    tmp_path: Path,
) -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        otel_export_endpoint="https://traces.example.com/v1/traces",
        build_dir=tmp_path,
    )
    project = ComposeProject(
        settings, "qcstack-unit", tmp_path, IPv4Network("10.231.240.0/28"), 18099, 18098
    )
    with pytest.raises(CommandError, match="no route out"):
        project.up()
    assert not (tmp_path / "projects").exists(), "nothing rendered, nothing started"


def test_collector_is_on_the_telemetry_network_alone_and_nothing_waits_for_it() -> None:
    """OBS-04: the collector's network is shared with its three senders and nothing else."""
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    assert services["otel-collector"]["networks"] == ["telemetry"]
    assert compose["networks"]["telemetry"]["internal"] is True
    on_telemetry = {name for name, s in services.items() if "telemetry" in s.get("networks", [])}
    assert on_telemetry == {"gateway", "qc-mcp", "falco-responder", "otel-collector"}
    assert not [n for n, s in services.items() if "otel-collector" in s.get("depends_on", {})]
