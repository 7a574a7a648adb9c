"""The gateway's one settings object: read once at start from QCSTACK_GATEWAY_* and secret files."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from gateway.policy import Profile


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="QCSTACK_GATEWAY_", extra="forbid", frozen=True)

    upstream_url: str = "http://qc-mcp:8000/mcp"
    host: str = "0.0.0.0"  # noqa: S104 -- inside its container; compose publishes it on loopback
    port: int = Field(default=8080, ge=1, le=65535)
    profile: Profile = Profile.RESEARCH
    held_tools: tuple[str, ...] = ()
    """Further tools to hold for approval, beyond live trading."""
    approval_wait_seconds: float = Field(default=900.0, gt=0)
    """How long a held call waits for a person before it is refused."""
    state_dir: Path = Path("/var/lib/qcstack-gateway")
    """The volume with the audit log, the approvals and the lockdown flag."""
    token_file: Path = Path("/run/secrets/gateway_token")
    """The bearer token MCP clients present."""


class SettingsError(RuntimeError):
    """A setting or secret is missing or unusable; the message says what to fix."""


def read_secret(path: Path, what: str) -> bytes:
    try:
        value = path.read_bytes().strip()
    except OSError as error:
        raise SettingsError(f"cannot read {what} from {path} ({error.strerror})") from error
    if len(value) < 16:
        raise SettingsError(f"{what} in {path} is empty or shorter than 16 bytes")
    return value
