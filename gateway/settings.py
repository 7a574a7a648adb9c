"""The gateway's one settings object: read once at start from QCSTACK_GATEWAY_* and secret files."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from gateway.limits import Limiter, RateLimit
from gateway.policy import Profile
from gateway.tools import kind_of
from servicebase.secrets import SettingsError, read_secret

__all__ = ["BridgeSettings", "GatewaySettings", "SettingsError", "read_secret"]


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="QCSTACK_GATEWAY_", extra="forbid", frozen=True)

    upstream_url: str = "http://qc-mcp:8000/mcp"
    upstream_sessions: int = Field(default=4, ge=1, le=32)
    """MCP sessions to qc-mcp kept open and shared by all client calls (gateway/upstream.py)."""
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
    brokerages_file: Path = Path("/run/secrets/gateway_brokerages")
    """The operator's brokerage configurations (gateway/brokerages.py); none when absent."""
    admins_file: Path = Path("/run/secrets/gateway_admins")
    """The people who approve held calls and lift lockdown: one `name:password` a line."""
    responder_token_file: Path = Path("/run/secrets/gateway_responder_token")
    """The runtime-detection responder's token: it engages lockdown and can do nothing else."""
    admin_session_seconds: float = Field(default=1800.0, gt=0, le=86400)
    """How long a login to the approval page lasts."""
    admin_hosts: tuple[str, ...] = ("127.0.0.1", "localhost", "[::1]")
    """The host names the admin pages answer to (the relay publishes on loopback); any other
    Host header, such as a DNS-rebinding name, is refused."""
    rate_limits: dict[str, str] = {}
    """Per-tool limits as calls/seconds, e.g. {"create_project": "10/60"}."""
    default_rate_limit: str = "120/60"
    """For every tool without its own limit; stop and liquidate are never limited."""
    compute_budget: str = "30/3600"
    """All compute-spending tools together (compiles, backtests, optimizations, nodes)."""
    max_request_bytes: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    """The largest MCP request body accepted (project files travel in tool arguments)."""
    max_json_depth: int = Field(default=32, ge=4, le=256)
    """The deepest nesting of arrays and objects accepted in a request."""
    max_sessions: int = Field(default=64, ge=1, le=1024)
    """Client MCP sessions open at once; one more gets HTTP 503. Each costs memory: size the
    container's memory limit with it (README, "The gateway's memory")."""
    otel_endpoint: str = ""
    """The collector's OTLP/HTTP traces URL (compose sets it); empty: no spans are sent."""
    otel_queue_spans: int = Field(default=4096, ge=64, le=1_000_000)
    """Spans held for the collector; beyond that they are dropped and counted, never waited for."""
    session_idle_seconds: float = Field(default=900.0, gt=0, le=86400)
    """A client session with no request in flight for this long is ended (the client opens a
    new one); idle sessions would otherwise hold the room `max_sessions` allows."""

    @field_validator("rate_limits")
    @classmethod
    def _rates(cls, value: dict[str, str]) -> dict[str, str]:
        for tool, rate in value.items():
            if kind_of(tool) is None:
                raise ValueError(f"rate limit for {tool!r}: no such tool")
            RateLimit.parse(rate)
        return value

    @field_validator("default_rate_limit", "compute_budget")
    @classmethod
    def _rate(cls, value: str) -> str:
        RateLimit.parse(value)
        return value

    def limiter(self) -> Limiter:
        return Limiter(
            per_tool={tool: RateLimit.parse(r) for tool, r in self.rate_limits.items()},
            default=RateLimit.parse(self.default_rate_limit),
            compute_budget=RateLimit.parse(self.compute_budget),
        )


class BridgeSettings(BaseSettings):
    """The stdio bridge's settings, on the client's machine (from the client's launch config)."""

    model_config = SettingsConfigDict(env_prefix="QCSTACK_BRIDGE_", extra="forbid", frozen=True)

    url: str = "http://127.0.0.1:8080/mcp"
    token_file: Path
    """The file holding the gateway's bearer token (`secrets/gateway_token`)."""
