"""The one settings object for qcstack, built once by the command line and passed down."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Every knob qcstack has. Read from QCSTACK_* variables and then `qcstack.env`."""

    model_config = SettingsConfigDict(
        env_prefix="QCSTACK_",
        env_file=REPO_ROOT / "qcstack.env",
        extra="forbid",
        frozen=True,
    )

    project_name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")] = "qcstack"
    """Compose project name of the running stack."""

    test_project_name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")] = "qcstack-test"
    """Compose project name the test command brings up; never the operator's stack."""

    build_dir: Path = REPO_ROOT / "build"
    """Fetched inputs (wheelhouse, base rootfs) and staged build contexts."""

    debian_suite: str = "bookworm"
    debian_mirror: str = "http://deb.debian.org/debian"

    base_image: str = ""
    """A pulled base image with python3.11 and /bin/sh to build from. Empty: build one from
    Debian packages with debootstrap (the default, and the only way on an offline machine)."""

    ca_bundle: Path = Path("/etc/ssl/certs/ca-certificates.crt")
    """CA bundle that pip trusts when fetching wheels (TLS-inspecting proxies need their own)."""

    image_tag: Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")] = "local"

    secrets_dir: Path = REPO_ROOT / "secrets"
    """Folder holding the QuantConnect credentials as files: qc_user_id, qc_api_token."""

    test_hosts: str = "local://"
    """testinfra host spec the infra suites run against (local:// or ssh://user@vm)."""

    @field_validator("ca_bundle", "build_dir", "secrets_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @property
    def repo_root(self) -> Path:
        return REPO_ROOT

    @property
    def seccomp_dir(self) -> Path:
        """The recorded syscalls and the qc-mcp.json profile compose gives the server."""
        return REPO_ROOT / "seccomp"

    @property
    def compose_file(self) -> Path:
        return REPO_ROOT / "compose" / "compose.yaml"

    def image(self, name: str) -> str:
        return f"qcstack/{name}:{self.image_tag}"
