"""The responder's model of Falco's JSON alert (responder/alert.py) and its settings."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from responder.alert import FalcoAlert, Priority
from responder.settings import ResponderSettings

# As Falco's json_output writes an alert (falco.org, "Falco Alerts" / output formatting): the
# fields every alert has, container plugin fields under output_fields.
DOCUMENTED = {
    "hostname": "vm-1",
    "output": "10:20:05.408091526: Critical unexpected process (proc=sh container=qc-mcp)",
    "output_fields": {
        "container.name": "qcstack-qc-mcp-1",
        "container.id": "4f8a1b2c3d4e",
        "container.image.repository": "qcstack/qc-mcp",
        "proc.name": "sh",
        "user.uid": 10001,
    },
    "priority": "Critical",
    "rule": "qcstack unexpected process",
    "source": "syscall",
    "tags": ["qcstack", "DET-01", "mitre_execution"],
    "time": "2026-12-06T10:20:05.408091526Z",
    "uuid": "5b9b6a8e-4a57-4a0b-9a43-9b0b4e0c1a7d",
}


def test_documented_alert_is_read_with_its_container() -> None:
    alert = FalcoAlert.model_validate(DOCUMENTED)
    assert alert.priority is Priority.CRITICAL and alert.rule == "qcstack unexpected process"
    assert alert.tags == ("qcstack", "DET-01", "mitre_execution")
    assert alert.container == "qcstack-qc-mcp-1"


def test_container_falls_back_to_its_id_and_may_be_absent() -> None:
    fields = {"container.id": "4f8a1b2c3d4e"}
    assert FalcoAlert.model_validate({**DOCUMENTED, "output_fields": fields}).container == (
        "4f8a1b2c3d4e"
    )
    assert FalcoAlert.model_validate({"rule": "r", "priority": "Notice"}).container == ""


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("Critical", Priority.CRITICAL),
        ("CRITICAL", Priority.CRITICAL),
        ("critical", Priority.CRITICAL),
        (" Warning ", Priority.WARNING),
        ("Informational", Priority.INFORMATIONAL),
        ("info", Priority.INFORMATIONAL),
        ("EMERGENCY", Priority.EMERGENCY),
    ],
)
def test_priority_is_read_in_any_case(given: str, expected: Priority) -> None:
    assert FalcoAlert.model_validate({**DOCUMENTED, "priority": given}).priority is expected


def test_priorities_are_ordered_as_falcos() -> None:
    names = ["Debug", "Informational", "Notice", "Warning", "Error", "Critical", "Alert"]
    assert [p.label for p in sorted(Priority)] == [*names, "Emergency"]


def test_unknown_fields_are_allowed_and_kept() -> None:
    alert = FalcoAlert.model_validate({**DOCUMENTED, "new_field_of_falco_0_45": {"x": 1}})
    assert alert.model_extra == {"new_field_of_falco_0_45": {"x": 1}}


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"rule": None}, "rule"),
        ({"rule": ""}, "rule"),
        ({"priority": "Severe"}, "priority"),
        ({"priority": 5}, "priority"),
        ({"tags": "qcstack"}, "tags"),
        ({"output_fields": ["a"]}, "output_fields"),
    ],
)
def test_an_alert_that_is_not_falcos_is_refused(change: dict[str, Any], where: str) -> None:
    document = {k: v for k, v in {**DOCUMENTED, **change}.items() if v is not None}
    with pytest.raises(ValidationError) as refused:
        FalcoAlert.model_validate(document)
    assert where in str(refused.value)


def test_settings_default_to_lockdown_from_critical_on_qcstacks_alerts() -> None:
    settings = ResponderSettings()
    assert settings.lockdown_priority is Priority.CRITICAL
    assert settings.lockdown_tag == "qcstack"
    assert settings.gateway_url == "http://gateway:8080"


def test_settings_read_the_priority_in_any_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QCSTACK_RESPONDER_LOCKDOWN_PRIORITY", "error")
    assert ResponderSettings().lockdown_priority is Priority.ERROR


@pytest.mark.parametrize(
    "url",
    ["gateway:8080", "ftp://gateway", "http://gateway:8080/admin", "http://u:p@gateway:8080"],
)
def test_settings_refuse_a_gateway_url_that_is_not_a_plain_origin(url: str) -> None:
    with pytest.raises(ValidationError, match="gateway_url"):
        ResponderSettings(gateway_url=url)
