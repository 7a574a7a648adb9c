"""Takes secrets out of tool arguments before they reach the audit log, spans, pages or errors."""

from __future__ import annotations

import re
from typing import Any

REDACTED = "[redacted]"
# Brokerage settings name their secrets like this (ib-password, binance-api-secret,
# tradier-access-token, oanda-access-token, binance-api-key, ...).
SECRET_KEY = re.compile(
    r"pass(word|phrase)?|secret|token|api[-_]?key|private[-_]?key|credential|authorization",
    re.IGNORECASE,
)


def redact(value: Any) -> Any:
    """A copy of `value` with every value under a secret-looking key replaced."""
    if isinstance(value, dict):
        return {
            key: REDACTED if isinstance(key, str) and SECRET_KEY.search(key) else redact(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(item) for item in value]
    return value
