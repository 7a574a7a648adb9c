"""The gateway's audit log (servicebase/audit.py), and its verifier aimed at the gateway's state."""

from __future__ import annotations

import sys
from pathlib import Path

from servicebase.audit import (
    GENESIS,
    AuditError,
    AuditLog,
    Verification,
    canonical,
    entry_hash,
    verify,
    verify_command,
)

__all__ = [
    "GENESIS",
    "AuditError",
    "AuditLog",
    "Verification",
    "canonical",
    "entry_hash",
    "main",
    "verify",
]


def default_path() -> Path:
    from gateway.settings import GatewaySettings

    return GatewaySettings().state_dir / "audit.jsonl"


main = verify_command("gateway", default_path)

if __name__ == "__main__":
    sys.exit(main())
