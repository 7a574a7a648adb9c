"""The command line's client for the gateway's admin API on 127.0.0.1, signed in as an admin
from the secrets folder's gateway_admins."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.admins import read_admins_file
from gateway.settings import SettingsError
from stack.process import CommandError

TIMEOUT_SECONDS = 30.0


def admin_credential(secrets_dir: Path, name: str | None = None) -> tuple[str, str]:
    """The named admin's name and password (the file's first admin unless named)."""
    try:
        admins = read_admins_file(secrets_dir / "gateway_admins")
    except SettingsError as error:
        raise CommandError(f"{error} (reading it needs root: the file is the gateway's)") from None
    for admin, password in admins:
        if name in (None, admin):
            return admin, password
    known = ", ".join(admin for admin, _ in admins)
    raise CommandError(f"no admin {name!r} in {secrets_dir / 'gateway_admins'} (it has {known})")


@dataclass(frozen=True)
class AdminApi:
    base_url: str
    """http://127.0.0.1:<gateway port>/admin/api"""
    name: str
    password: str

    def get(self, path: str) -> Any:
        return self._request("GET", path, None)

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self._request("POST", path, body or {})

    def _request(self, method: str, path: str, body: dict[str, Any] | None) -> Any:
        credential = base64.b64encode(f"{self.name}:{self.password}".encode()).decode("ascii")
        headers = {"Authorization": f"Basic {credential}", "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        url = self.base_url + path
        request = urllib.request.Request(url, data=data, headers=headers, method=method)  # noqa: S310 -- http to our own loopback port
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            raise CommandError(f"the gateway refused {method} {path}: {_reason(error)}") from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise CommandError(
                f"cannot reach the gateway's admin API at {url} ({reason}): is the stack up "
                "(`bin/qcstack up`), and is gateway_port the one it was started with?"
            ) from None


def _reason(error: urllib.error.HTTPError) -> str:
    try:
        message = json.loads(error.read()).get("error")
    except (ValueError, AttributeError):
        message = None
    return f"{error.code} {message or error.reason}"
