"""The responder's one settings object: read once at start from QCSTACK_RESPONDER_* variables."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from responder.alert import Priority


class ResponderSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="QCSTACK_RESPONDER_", extra="forbid", frozen=True)

    host: str = "0.0.0.0"  # noqa: S104 -- inside its container; compose publishes it on loopback
    port: int = Field(default=8765, ge=1, le=65535)
    lockdown_priority: Priority = Priority.CRITICAL
    """Alerts at or above this priority, tagged `lockdown_tag`, engage the gateway's lockdown."""
    lockdown_tag: str = Field(default="qcstack", min_length=1)
    """The tag that marks an alert as one of qcstack's own rules (falco/qcstack_rules.yaml)."""
    gateway_url: str = "http://gateway:8080"
    """The gateway, whose POST /admin/api/lockdown/engage the responder calls."""
    gateway_host: str = "localhost"
    """The Host header of those calls: the gateway's admin API answers only to its admin_hosts
    (its guard against DNS rebinding), which name loopback."""
    token_file: Path = Path("/run/secrets/responder_token")
    """The responder's token, the same value as the gateway's gateway_responder_token."""
    state_dir: Path = Path("/var/lib/qcstack-responder")
    """The volume with the responder's audit log."""
    max_body_bytes: int = Field(default=256 * 1024, ge=1024, le=16 * 1024 * 1024)
    """The largest alert accepted; Falco's alerts are a few KiB."""
    suppress_seconds: float = Field(default=60.0, ge=0, le=86400)
    """A repeat of an alert (same rule, same container) within this many seconds is recorded
    as suppressed and makes no engage call of its own; a repeat of a lockdown alert has the
    gateway's state checked instead (`check_spacing_seconds`). 0 suppresses nothing."""
    check_spacing_seconds: float = Field(default=0.25, ge=0, le=0.5)
    """Checks of the gateway's lockdown state for repeats start at least this far apart: a storm
    of repeats is one GET /healthz per period (and an engage only when it is not locked), and a
    repeat waits at most this long for its check (DET-08 promises lockdown within a second)."""
    call_timeout_seconds: float = Field(default=2.0, gt=0, le=60)
    """How long one call to the gateway may take."""
    retry_attempts: int = Field(default=30, ge=1, le=1000)
    """Calls to the gateway for one lockdown before the responder gives up (and says so on
    /healthz until a later lockdown gets through)."""
    retry_first_seconds: float = Field(default=0.25, gt=0, le=60)
    """The wait before the first retry; it doubles after each failure ..."""
    retry_max_seconds: float = Field(default=10.0, gt=0, le=600)
    """... up to this."""
    otel_endpoint: str = ""
    """The collector's OTLP/HTTP traces URL (compose sets it); empty: no spans are sent."""
    otel_queue_spans: int = Field(default=4096, ge=64, le=1_000_000)
    """Spans held for the collector; beyond that they are dropped and counted, never waited for."""

    @field_validator("lockdown_priority", mode="before")
    @classmethod
    def _priority(cls, value: object) -> Priority:
        return Priority.parse(value)

    @field_validator("gateway_url")
    @classmethod
    def _gateway_url(cls, value: str) -> str:
        url = urlsplit(value)
        if url.scheme not in ("http", "https") or not url.hostname or url.path not in ("", "/"):
            raise ValueError(f"gateway_url {value!r} must be http(s)://host[:port], no path")
        if url.username or url.password or url.query or url.fragment:
            raise ValueError(f"gateway_url {value!r}: no user, password, query or fragment")
        return value.rstrip("/")

    @property
    def audit_path(self) -> Path:
        return self.state_dir / "audit.jsonl"
