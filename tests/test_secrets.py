"""Credentials: refused when missing or empty, written readable by the server's user alone."""

from __future__ import annotations

import importlib.util
import os
import stat
from pathlib import Path
from types import ModuleType

import pytest

from stack.process import CommandError
from stack.secrets import APP_UID, ensure_secrets, write_secret

LAUNCHER = Path(__file__).resolve().parent.parent / "images" / "qc-mcp" / "launch.py"


def load_launcher() -> ModuleType:
    spec = importlib.util.spec_from_file_location("qcstack_launch", LAUNCHER)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_missing_credentials_are_refused_naming_each_file(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match=r"qc_user_id .*missing.*qc_api_token .*missing"):
        ensure_secrets(tmp_path, interactive=False)


def test_empty_credential_is_refused(tmp_path: Path) -> None:
    (tmp_path / "qc_user_id").write_text("12345\n")
    (tmp_path / "qc_api_token").write_text("  \n")
    with pytest.raises(CommandError, match=r"qc_api_token .*empty"):
        ensure_secrets(tmp_path, interactive=False)


@pytest.mark.skipif(os.geteuid() != 0, reason="handing a file to uid 10001 needs root")
def test_written_secret_is_readable_by_the_server_user_alone(tmp_path: Path) -> None:
    write_secret(tmp_path, "qc_api_token", "token-value")
    info = (tmp_path / "qc_api_token").stat()
    assert info.st_uid == APP_UID
    assert stat.S_IMODE(info.st_mode) == 0o400


@pytest.mark.parametrize("content", ["", "   \n"])
def test_launcher_refuses_an_empty_secret_file(tmp_path: Path, content: str) -> None:
    secret = tmp_path / "qc_api_token"
    secret.write_text(content)
    with pytest.raises(SystemExit, match=r"QUANTCONNECT_API_TOKEN .* is empty"):
        load_launcher().read_secret("QUANTCONNECT_API_TOKEN", str(secret))


def test_launcher_refuses_a_missing_secret_file(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="cannot read secret QUANTCONNECT_USER_ID"):
        load_launcher().read_secret("QUANTCONNECT_USER_ID", str(tmp_path / "absent"))


def test_launcher_refuses_credentials_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUANTCONNECT_API_TOKEN", "leaky")
    with pytest.raises(SystemExit, match="set in the environment"):
        load_launcher().main()


@pytest.mark.skipif(os.geteuid() != 0, reason="handing a file to uid 10004 needs root")
def test_up_makes_separate_gateway_credentials_for_the_gateway_alone(tmp_path: Path) -> None:
    from gateway.admins import parse_admins
    from stack.secrets import GATEWAY_UID, GENERATED_SECRETS

    write_secret(tmp_path, "qc_user_id", "12345")
    write_secret(tmp_path, "qc_api_token", "token-value")
    ensure_secrets(tmp_path, interactive=False)
    values = {name: (tmp_path / name).read_text().strip() for name in GENERATED_SECRETS}
    [(admin, password)] = parse_admins(values["gateway_admins"], "gateway_admins")
    assert admin == "admin"
    # The agent's bearer token, the admin's password and the responder's token all differ.
    assert len({values["gateway_token"], password, values["gateway_responder_token"]}) == 3
    for name in GENERATED_SECRETS:
        info = (tmp_path / name).stat()
        assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (GATEWAY_UID, 0o400)


@pytest.mark.skipif(os.geteuid() != 0, reason="handing a file to uid 10004 needs root")
def test_up_keeps_an_existing_admins_file(tmp_path: Path) -> None:
    write_secret(tmp_path, "qc_user_id", "12345")
    write_secret(tmp_path, "qc_api_token", "token-value")
    write_secret(tmp_path, "gateway_admins", "alice:alices-own-password-123")
    ensure_secrets(tmp_path, interactive=False)
    assert (tmp_path / "gateway_admins").read_text() == "alice:alices-own-password-123\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="handing a file to uid 10007 needs root")
def test_up_gives_the_responder_its_own_copy_of_its_token_and_keeps_it_equal(
    tmp_path: Path,
) -> None:
    from stack.secrets import RESPONDER_UID

    write_secret(tmp_path, "qc_user_id", "12345")
    write_secret(tmp_path, "qc_api_token", "token-value")
    ensure_secrets(tmp_path, interactive=False)
    token = (tmp_path / "gateway_responder_token").read_text()
    assert (tmp_path / "responder_token").read_text() == token
    info = (tmp_path / "responder_token").stat()
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (RESPONDER_UID, 0o400)
    # A changed gateway token (rotated by hand) is copied again on the next `up`.
    write_secret(tmp_path, "gateway_responder_token", "rotated-responder-token-123456")
    ensure_secrets(tmp_path, interactive=False)
    assert (tmp_path / "responder_token").read_text() == "rotated-responder-token-123456\n"
