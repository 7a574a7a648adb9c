"""The admin credentials (`name:password` lines) and the responder's token, checked in constant
time and kept apart from the MCP clients' bearer token."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from gateway.settings import GatewaySettings, SettingsError, read_secret

ADMIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
MIN_PASSWORD_LENGTH = 16
# Compared against when a name is unknown, so an unknown name costs what a wrong password does.
_NO_ONE = hashlib.sha256(b"qcstack: no such admin").digest()


def parse_admins(text: str, source: str) -> list[tuple[str, str]]:
    """Reads `name:password` lines (blank lines and # comments skipped); a bad line is refused
    by its number, never by its content, since it may hold a password."""
    admins: list[tuple[str, str]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, separator, password = line.partition(":")
        where = f"{source} line {number}"
        if not separator:
            raise SettingsError(f"{where} is not name:password")
        if not ADMIN_NAME.match(name):
            raise SettingsError(
                f"{where}: an admin name is 1-64 letters, digits, '_', '.', '@' or '-'"
            )
        if len(password) < MIN_PASSWORD_LENGTH:
            raise SettingsError(
                f"{where}: the password of {name!r} is shorter than {MIN_PASSWORD_LENGTH} "
                "characters"
            )
        if any(name == known for known, _ in admins):
            raise SettingsError(f"{where}: admin {name!r} is named twice")
        admins.append((name, password))
    if not admins:
        raise SettingsError(f"{source} names no admin: write one `name:password` line")
    return admins


def read_admins_file(path: Path) -> list[tuple[str, str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise SettingsError(
            f"cannot read the admin credentials from {path} ({reason}): write one "
            "`name:password` line (`bin/qcstack up` makes one)"
        ) from error
    return parse_admins(text, str(path))


def _digest(secret: str | bytes) -> bytes:
    return hashlib.sha256(secret.encode() if isinstance(secret, str) else secret).digest()


@dataclass(frozen=True)
class Admins:
    """The admins by name, their passwords kept only as digests of equal length."""

    digests: Mapping[str, bytes]

    @classmethod
    def of(cls, admins: list[tuple[str, str]]) -> Admins:
        return cls(MappingProxyType({name: _digest(password) for name, password in admins}))

    def authenticate(self, name: str, password: str) -> str | None:
        """The admin's name when the password is theirs, else None."""
        expected = self.digests.get(name, _NO_ONE)
        matches = hmac.compare_digest(_digest(password), expected)
        return name if matches and name in self.digests else None

    def uses(self, secret: bytes) -> bool:
        """Whether any admin's password is `secret` (checked against the other credentials)."""
        given = _digest(secret)
        return any(hmac.compare_digest(given, digest) for digest in self.digests.values())


@dataclass(frozen=True)
class AdminAccess:
    """Who may use /admin: the admins (everything) and the responder (engaging lockdown only)."""

    admins: Admins
    responder_token: bytes

    def is_responder(self, token: bytes) -> bool:
        return hmac.compare_digest(_digest(token), _digest(self.responder_token))


def load_admin_access(settings: GatewaySettings, bearer_token: bytes) -> AdminAccess:
    """Reads both credentials; refuses any that equals another, since the MCP clients' token is
    in an agent's hands and must open nothing but /mcp."""
    admins = Admins.of(read_admins_file(settings.admins_file))
    responder = read_secret(settings.responder_token_file, "the lockdown responder's token")
    if admins.uses(bearer_token):
        raise SettingsError(
            f"an admin password in {settings.admins_file} is the MCP clients' bearer token "
            f"({settings.token_file}); give the admin a password of their own"
        )
    if admins.uses(responder):
        raise SettingsError(
            f"an admin password in {settings.admins_file} is the responder's token "
            f"({settings.responder_token_file}); give the admin a password of their own"
        )
    if hmac.compare_digest(_digest(responder), _digest(bearer_token)):
        raise SettingsError(
            f"the responder's token ({settings.responder_token_file}) is the MCP clients' bearer "
            f"token ({settings.token_file}); make a new responder token"
        )
    return AdminAccess(admins, responder)
