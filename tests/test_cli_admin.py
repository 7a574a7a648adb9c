"""`qcstack approvals`, `qcstack lockdown` and `qcstack audit verify` against a real gateway app
on loopback, signed in with the admin credential from the secrets folder."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from gateway import audit
from gateway.admins import AdminAccess, Admins
from gateway.calls import Gate
from gateway.server import build_app, build_gate
from gateway.settings import GatewaySettings
from stack import cli

ADMIN = ("carol", "carol-password-0123456789")
SECRET = "canary-brokerage-secret-4411"  # noqa: S105 -- searched for in the output
DEPLOY = {"model": {"projectId": 42, "brokerage": {"id": "IB", "ib-password": SECRET}}}


@pytest.fixture
def gate(tmp_path: Path) -> Gate:
    return build_gate(GatewaySettings(state_dir=tmp_path / "state"))


@pytest.fixture
def gateway_port(tmp_path: Path, gate: Gate, monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """A gateway app on 127.0.0.1 and a secrets folder with its admins, as `qcstack up` leaves."""
    settings = GatewaySettings(
        upstream_url="http://127.0.0.1:9/mcp", state_dir=gate.audit.path.parent
    )
    access = AdminAccess(Admins.of([ADMIN]), b"responder-token-0123456789")
    app = build_app(settings, gate, b"bearer-token-0123456789", access)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, ws="none", log_level="warning")
    )
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    port = int(server.servers[0].sockets[0].getsockname()[1])
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "gateway_admins").write_text(f"{ADMIN[0]}:{ADMIN[1]}\n")
    monkeypatch.setenv("QCSTACK_GATEWAY_PORT", str(port))
    monkeypatch.setenv("QCSTACK_SECRETS_DIR", str(secrets))
    yield port
    server.should_exit = True
    thread.join(10)


def qcstack(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_approvals_list_show_and_approve_by_the_admin_of_the_secrets_folder(
    gateway_port: int, gate: Gate, capsys: pytest.CaptureFixture[str]
) -> None:
    held = gate.approvals.hold("create_live_algorithm", DEPLOY)
    code, out, _ = qcstack(capsys, "approvals", "list")
    assert code == 0 and held.id in out and "project 42" in out and "brokerage IB" in out
    code, out, _ = qcstack(capsys, "approvals", "show", held.id)
    assert code == 0 and json.loads(out)["tool"] == "create_live_algorithm"
    assert SECRET not in out
    code, out, _ = qcstack(capsys, "approvals", "approve", held.id)
    assert code == 0 and f"{held.id} (create_live_algorithm): approved by carol" in out
    assert gate.approvals.get(held.id).decided_by == "carol"
    assert "no call is waiting" in qcstack(capsys, "approvals", "list")[1]


def test_approvals_deny_and_a_second_decision_is_refused(
    gateway_port: int, gate: Gate, capsys: pytest.CaptureFixture[str]
) -> None:
    held = gate.approvals.hold("create_live_algorithm", DEPLOY)
    assert qcstack(capsys, "approvals", "deny", held.id)[0] == 0
    code, _, err = qcstack(capsys, "approvals", "approve", held.id)
    assert code == 1 and "409" in err and "already denied" in err


def test_lockdown_engage_status_and_lift(
    gateway_port: int, gate: Gate, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = qcstack(capsys, "lockdown", "engage", "--reason", "drill")
    assert code == 0 and "ENGAGED" in out and "by carol: drill" in out
    assert gate.lockdown.state().locked
    assert "ENGAGED" in qcstack(capsys, "lockdown")[1]
    code, out, _ = qcstack(capsys, "lockdown", "lift")
    assert code == 0 and "not engaged (lifted" in out
    assert not gate.lockdown.state().locked


def test_lockdown_engage_without_a_reason_is_refused(
    gateway_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = qcstack(capsys, "lockdown", "engage")
    assert code == 1 and "--reason" in err


@pytest.mark.parametrize(
    ("admins", "argv", "message"),
    [
        (None, ["approvals", "list"], "cannot read the admin credentials"),
        ("carol:wrong-password-0123456", ["lockdown"], "401 wrong admin name or password"),
        (f"{ADMIN[0]}:{ADMIN[1]}", ["lockdown", "--admin", "dave"], "no admin 'dave'"),
    ],
    ids=["no-admins-file", "wrong-password", "unknown-admin"],
)
def test_cli_without_a_working_admin_credential_says_what_is_wrong(
    gateway_port: int,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    admins: str | None,
    argv: list[str],
    message: str,
) -> None:
    path = tmp_path / "secrets" / "gateway_admins"
    if admins is None:
        path.unlink()
    else:
        path.write_text(admins + "\n")
    code, _, err = qcstack(capsys, *argv)
    assert code == 1 and message in err


def test_cli_says_when_the_gateway_is_not_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "gateway_admins").write_text(f"{ADMIN[0]}:{ADMIN[1]}\n")
    monkeypatch.setenv("QCSTACK_SECRETS_DIR", str(tmp_path))
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("QCSTACK_GATEWAY_PORT", str(port))
    code, _, err = qcstack(capsys, "approvals", "list")
    assert code == 1 and "cannot reach the gateway's admin API" in err


# ---- audit verify -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "service", "module"),
    [
        ((), "gateway", "gateway.audit"),
        (("--service", "falco-responder"), "falco-responder", "responder.audit"),
    ],
)
def test_audit_verify_runs_the_services_verifier_in_its_container(
    monkeypatch: pytest.MonkeyPatch, extra: tuple[str, ...], service: str, module: str
) -> None:
    ran: list[list[str]] = []

    def fake_run(argv: list[str], **kwargs: Any) -> Any:
        ran.append([str(a) for a in argv])
        return type("Done", (), {"returncode": 0})()

    monkeypatch.setattr(cli, "run", fake_run)
    monkeypatch.setattr(cli.ComposeProject, "write_rendered_files", lambda self: None)
    assert cli.main(["audit", "verify", *extra]) == 0
    command = ran[0]
    assert command[:2] == ["docker", "compose"]
    exec_at = command.index("exec")
    assert command[exec_at:] == [
        "exec", "-T", service, "/usr/bin/python3", "-m", module, "verify",
    ]  # fmt: skip


def test_audit_verifier_names_the_first_broken_entry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "audit.jsonl"
    log = audit.AuditLog(path)
    for n in range(4):
        log.append({"event": "allow", "n": n})
    log.close()
    assert audit.main(["verify", str(path)]) == 0
    assert "intact, 4 entries" in capsys.readouterr().out
    lines = path.read_text().splitlines()
    lines[2] = lines[2].replace('"n":2', '"n":7')
    path.write_text("\n".join(lines) + "\n")
    assert audit.main(["verify", str(path)]) == 1
    assert "broken at entry 3 (its content was changed)" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [[], ["check"], ["verify", "a", "b"]])
def test_audit_verifier_refuses_unknown_usage(argv: list[str]) -> None:
    assert audit.main(argv) == 2


def test_audit_verifier_reports_a_missing_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert audit.main(["verify", str(tmp_path / "none.jsonl")]) == 1
    assert "no audit log" in capsys.readouterr().err
