"""Admin credentials: a bad file refused at start by line (never echoing a password), names and
passwords checked in constant time, and no credential doubling as another."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.admins import Admins, load_admin_access, parse_admins
from gateway.server import main
from gateway.settings import GatewaySettings, SettingsError

PASSWORD = "correct-horse-battery-staple"  # noqa: S105 -- a test password
BEARER = b"mcp-clients-bearer-token-0123456789"
RESPONDER = "responder-token-0123456789abcdef"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "names no admin"),
        ("# only a comment\n\n", "names no admin"),
        (f"alice {PASSWORD}", "line 1 is not name:password"),
        ("alice:short", "shorter than 16"),
        (f"al ice:{PASSWORD}", "admin name"),
        (f":{PASSWORD}", "admin name"),
        (f"alice:{PASSWORD}\nalice:{PASSWORD}x", "line 2: admin 'alice' is named twice"),
    ],
    ids=[
        "empty",
        "comments-only",
        "no-colon",
        "short-password",
        "space-in-name",
        "no-name",
        "twice",
    ],
)
def test_malformed_admins_file_is_refused_by_line_without_echoing_passwords(
    text: str, message: str
) -> None:
    with pytest.raises(SettingsError, match=message) as refused:
        parse_admins(text, "gateway_admins")
    assert PASSWORD not in str(refused.value)


def test_admins_file_allows_comments_blank_lines_and_colons_in_passwords() -> None:
    text = f"# who approves\nalice:{PASSWORD}\n\nbob:pass:word:with:colons\n"
    assert parse_admins(text, "f") == [("alice", PASSWORD), ("bob", "pass:word:with:colons")]


@pytest.mark.parametrize(
    ("name", "password"),
    [
        ("alice", PASSWORD + "x"),
        ("alice", ""),
        ("mallory", PASSWORD),
        ("", ""),
        ("ALICE", PASSWORD),
    ],
    ids=["wrong-password", "empty-password", "unknown-admin", "nothing", "other-case"],
)
def test_guessed_admin_credentials_are_not_accepted(name: str, password: str) -> None:
    admins = Admins.of([("alice", PASSWORD)])
    assert admins.authenticate(name, password) is None


def test_admin_with_the_right_password_is_named() -> None:
    assert Admins.of([("alice", PASSWORD)]).authenticate("alice", PASSWORD) == "alice"


def write_credentials(tmp_path: Path, admins: str, responder: str) -> GatewaySettings:
    (tmp_path / "gateway_admins").write_text(admins)
    (tmp_path / "gateway_responder_token").write_text(responder)
    return GatewaySettings(
        admins_file=tmp_path / "gateway_admins",
        responder_token_file=tmp_path / "gateway_responder_token",
        token_file=tmp_path / "gateway_token",
    )


@pytest.mark.parametrize(
    ("admins", "responder", "message"),
    [
        (f"alice:{BEARER.decode()}", RESPONDER, "admin password .* is the MCP clients' bearer"),
        (f"alice:{RESPONDER}", RESPONDER, "admin password .* is the responder's token"),
        (f"alice:{PASSWORD}", BEARER.decode(), "responder's token .* is the MCP clients' bearer"),
    ],
    ids=["admin-is-bearer", "admin-is-responder", "responder-is-bearer"],
)
def test_a_credential_that_doubles_as_another_is_refused_at_start(
    tmp_path: Path, admins: str, responder: str, message: str
) -> None:
    # The agent holds the bearer token: were it also an admin's password, the agent could
    # approve its own live deployment.
    settings = write_credentials(tmp_path, admins, responder)
    with pytest.raises(SettingsError, match=message):
        load_admin_access(settings, BEARER)


def test_separate_credentials_load(tmp_path: Path) -> None:
    access = load_admin_access(write_credentials(tmp_path, f"alice:{PASSWORD}", RESPONDER), BEARER)
    assert access.admins.authenticate("alice", PASSWORD) == "alice"
    assert access.is_responder(RESPONDER.encode())
    assert not access.is_responder(BEARER)


@pytest.mark.parametrize(
    ("missing", "message"),
    [("gateway_admins", "admin credentials"), ("gateway_responder_token", "responder's token")],
)
def test_gateway_refuses_to_start_without_admin_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, missing: str, message: str
) -> None:
    (tmp_path / "gateway_token").write_text(BEARER.decode())
    (tmp_path / "gateway_admins").write_text(f"alice:{PASSWORD}\n")
    (tmp_path / "gateway_responder_token").write_text(RESPONDER)
    (tmp_path / missing).unlink()
    for variable, name in [
        ("TOKEN_FILE", "gateway_token"),
        ("ADMINS_FILE", "gateway_admins"),
        ("RESPONDER_TOKEN_FILE", "gateway_responder_token"),
    ]:
        monkeypatch.setenv(f"QCSTACK_GATEWAY_{variable}", str(tmp_path / name))
    monkeypatch.setenv("QCSTACK_GATEWAY_STATE_DIR", str(tmp_path / "state"))
    with pytest.raises(SystemExit, match=message) as stopped:
        main()
    assert str(tmp_path / missing) in str(stopped.value)
