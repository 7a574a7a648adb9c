"""Brokerage secrets are taken out of arguments, whatever the brokerage calls them."""

from __future__ import annotations

import pytest

from gateway.redact import REDACTED, redact


@pytest.mark.parametrize(
    "key",
    [
        "ib-password",
        "binance-api-secret",
        "binance-api-key",
        "tradier-access-token",
        "oanda-access-token",
        "Authorization",
        "coinbase-passphrase",
        "private_key",
    ],
)
def test_secret_keys_are_redacted_at_any_depth(key: str) -> None:
    arguments = {"model": {"brokerage": {"id": "X", key: "canary-secret"}, "list": [{key: "s"}]}}
    cleaned = redact(arguments)
    assert cleaned["model"]["brokerage"] == {"id": "X", key: REDACTED}
    assert cleaned["model"]["list"] == [{key: REDACTED}]
    assert arguments["model"]["brokerage"][key] == "canary-secret", "the original is untouched"


@pytest.mark.parametrize("key", ["id", "ib-user-name", "ib-account", "projectId", "nodeId"])
def test_ordinary_keys_are_kept(key: str) -> None:
    assert redact({key: "value"}) == {key: "value"}
