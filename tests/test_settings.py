"""Settings refuse bad input with a message that names the setting."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from stack.settings import Settings


@pytest.fixture(autouse=True)
def no_qcstack_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests check defaults and refusals: QCSTACK_* variables set in the shell (a second
    test stack's ports, say) must not change what they see."""
    for name in [name for name in os.environ if name.startswith("QCSTACK_")]:
        monkeypatch.delenv(name)


def test_defaults_build_from_debian_and_use_separate_test_project() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.base_image == ""
    assert settings.debian_suite == "bookworm"
    assert settings.project_name != settings.test_project_name


@pytest.mark.parametrize(
    ("field", "value"),
    [("image_tag", "bad tag!"), ("project_name", "Upper Case"), ("test_project_name", "")],
)
def test_invalid_value_is_refused_naming_the_setting(field: str, value: str) -> None:
    with pytest.raises(ValidationError, match=field):
        Settings(_env_file=None, **{field: value})  # type: ignore[arg-type, call-arg]


def test_unknown_setting_in_env_file_is_refused(tmp_path: Path) -> None:
    env_file = tmp_path / "qcstack.env"
    env_file.write_text("QCSTACK_IMAGE_TAGG=typo\n")
    with pytest.raises(ValidationError, match="image_tagg"):
        Settings(_env_file=env_file)  # type: ignore[call-arg]


def test_environment_variable_sets_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QCSTACK_IMAGE_TAG", "v2")
    assert Settings(_env_file=None).image(name="qc-mcp") == "qcstack/qc-mcp:v2"  # type: ignore[call-arg]


@pytest.mark.parametrize(
    "subnet", ["172.30.254.0/28", "192.168.250.0/28", "10.0.0.0/29", "8.8.8.0/28"]
)
def test_egress_subnet_docker_could_hand_out_or_too_small_is_refused(subnet: str) -> None:
    with pytest.raises(ValidationError, match="egress_subnet"):
        Settings(_env_file=None, egress_subnet=subnet)  # type: ignore[call-arg, arg-type]


def test_responder_settings_are_checked_and_rendered_for_its_container() -> None:
    settings = Settings(
        _env_file=None, responder={"lockdown_priority": "error", "suppress_seconds": 5}
    )  # type: ignore[call-arg]
    assert settings.responder_environment() == {
        "QCSTACK_RESPONDER_LOCKDOWN_PRIORITY": "error",
        "QCSTACK_RESPONDER_SUPPRESS_SECONDS": "5",
    }
    assert (settings.responder_port, settings.test_responder_port) == (8079, 18079)


@pytest.mark.parametrize(
    ("responder", "named"),
    [
        ({"lockdown_priority": "severe"}, "lockdown_priority"),
        ({"no_such_setting": 1}, "no_such_setting"),
        ({"gateway_url": "http://elsewhere:8080"}, "set by the compose file"),
        ({"token_file": "/tmp/token"}, "set by the compose file"),
    ],
)
def test_responder_settings_refuse_bad_or_fixed_values(
    responder: dict[str, object], named: str
) -> None:
    with pytest.raises(ValidationError, match=named):
        Settings(_env_file=None, responder=responder)  # type: ignore[call-arg]
