"""Checks and writes the secret files that compose hands to the services as Docker secrets."""

from __future__ import annotations

import getpass
import os
import secrets
import sys
from collections.abc import Callable
from pathlib import Path

from stack.process import CommandError

APP_UID = 10001
GATEWAY_UID = 10004
RESPONDER_UID = 10007
SECRET_NAMES = ("qc_user_id", "qc_api_token")
PROMPTS = {"qc_user_id": "QuantConnect user id", "qc_api_token": "QuantConnect API token"}
FIRST_ADMIN = "admin"


def _first_admin() -> str:
    return f"{FIRST_ADMIN}:{secrets.token_urlsafe(24)}"


def _random_token() -> str:
    return secrets.token_urlsafe(32)


GENERATED_SECRETS: dict[str, Callable[[], str]] = {
    "gateway_token": _random_token,
    "gateway_admins": _first_admin,
    "gateway_responder_token": _random_token,
    "gateway_brokerages": lambda: "{}",
}
"""Secrets qcstack makes itself when they are missing: random, never asked for. The clients'
bearer token, the admins (one, named `admin`, at first) and the lockdown responder's token are
three separate secrets, so none of them opens what another does. The brokerage configurations
start empty: the operator adds them (gateway/brokerages.py says how)."""
DERIVED_SECRETS = {"responder_token": "gateway_responder_token"}
"""Secrets that hold another's value for another service's user: the responder (uid 10007) gets
its own file of the gateway's responder token, since the gateway's file is 0400 for uid 10004.
Rewritten from their source on every `up`, so the two never differ."""
OWNERS = {
    **{name: GATEWAY_UID for name in GENERATED_SECRETS},
    "responder_token": RESPONDER_UID,
}
"""The uid that reads each secret; qc-mcp's (10001) for the rest."""
# The API double (test stacks) runs as qc-mcp's user, so the test CA's files are its.

STACK_SECRETS = (*SECRET_NAMES, *GENERATED_SECRETS, *DERIVED_SECRETS)
"""Every secret file the stack's compose file names."""


def owner(name: str) -> int:
    return OWNERS.get(name, APP_UID)


def write_secret(directory: Path, name: str, value: str) -> None:
    """Writes one secret readable by its service's user alone (SEC-02: 0400, owned by its uid)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / name
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(value.strip() + "\n")
    os.chown(path, owner(name), owner(name))


def missing_secrets(directory: Path) -> list[str]:
    missing = []
    for name in SECRET_NAMES:
        path = directory / name
        try:
            if not path.read_text(encoding="utf-8").strip():
                missing.append(f"{name} ({path} is empty)")
        except OSError:
            missing.append(f"{name} ({path} is missing)")
    return missing


def ensure_secrets(directory: Path, *, interactive: bool) -> None:
    """Refuses to go on without every credential; asks for them on a terminal."""
    missing = missing_secrets(directory)
    if missing and interactive and sys.stdin.isatty():
        for name in SECRET_NAMES:
            if any(m.startswith(name) for m in missing):
                write_secret(directory, name, getpass.getpass(f"{PROMPTS[name]}: "))
        missing = missing_secrets(directory)
    if missing:
        raise CommandError(
            "missing credentials: " + ", ".join(missing) + f". Write each into {directory}/"
            " (one value per file), or run `bin/qcstack up` on a terminal to be asked for them"
        )
    for name, make in GENERATED_SECRETS.items():
        if not (directory / name).exists():
            write_secret(directory, name, make())
            print(f"qcstack: made a new {name} in {directory / name}", file=sys.stderr)
    for name, source in DERIVED_SECRETS.items():
        value = (directory / source).read_text(encoding="utf-8").strip()
        path = directory / name
        if not path.exists() or path.read_text(encoding="utf-8").strip() != value:
            write_secret(directory, name, value)
    for name in STACK_SECRETS:
        path = directory / name
        info = path.stat()
        if info.st_uid != owner(name) or info.st_mode & 0o077:
            os.chown(path, owner(name), owner(name))
            path.chmod(0o400)
