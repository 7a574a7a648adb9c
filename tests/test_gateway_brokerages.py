"""The gateway's brokerage store: named configurations in, secrets filled after the policy, out
of every answer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.brokerages import CONFIGURATION_KEY, BrokerageError, BrokerageStore

PASSWORD = "canary-ib-password-5150"  # noqa: S105 -- a canary
STORE = BrokerageStore({"ib-main": {"id": "IB", "ib-user-name": "trader", "ib-password": PASSWORD}})


def deploy(brokerage: dict[str, object], **providers: dict[str, object]) -> dict[str, object]:
    return {"model": {"projectId": 1, "brokerage": brokerage, "dataProviders": providers}}


def test_missing_store_file_means_no_configurations(tmp_path: Path) -> None:
    assert BrokerageStore.load(tmp_path / "absent").configurations == {}


@pytest.mark.parametrize(
    ("content", "refusal"),
    [
        ("not json", "is not JSON"),
        ("[]", "must hold a JSON object"),
        ('{"ib": {"ib-password": "x"}}', "needs a string `id`"),
        ('{"ib": "IB"}', "needs a string `id`"),
    ],
)
def test_malformed_store_file_is_refused_without_echoing_it(
    tmp_path: Path, content: str, refusal: str
) -> None:
    path = tmp_path / "gateway_brokerages"
    path.write_text(content)
    with pytest.raises(BrokerageError, match=refusal) as raised:
        BrokerageStore.load(path)
    assert "ib-password" not in str(raised.value) or '"x"' not in str(raised.value)


def test_stored_configuration_is_loaded(tmp_path: Path) -> None:
    path = tmp_path / "gateway_brokerages"
    path.write_text(json.dumps(STORE.configurations))
    assert BrokerageStore.load(path) == STORE


@pytest.mark.parametrize(
    "arguments",
    [
        deploy({"id": "IB", "ib-password": "typed-by-the-model"}),
        deploy({"id": "IB", CONFIGURATION_KEY: "ib-main", "ib-account": "U123"}),
        deploy({"id": "QuantConnectBrokerage"}, IB={"id": "IB", "ib-password": "x"}),
    ],
)
def test_credentials_in_the_models_call_are_refused(arguments: dict[str, object]) -> None:
    refusal = STORE.refusal("create_live_algorithm", arguments)
    assert refusal is not None and "come from the gateway's store" in refusal


def test_paper_brokerage_needs_no_configuration() -> None:
    arguments = deploy({"id": "QuantConnectBrokerage", "cash": [{"amount": 1000}]})
    assert STORE.refusal("create_live_algorithm", arguments) is None
    assert STORE.fill("create_live_algorithm", arguments) == arguments


def test_named_configuration_is_filled_for_brokerage_and_data_provider() -> None:
    reference = {"id": "IB", CONFIGURATION_KEY: "ib-main"}
    filled = STORE.fill("create_live_algorithm", deploy(reference, IB=reference))
    stored = dict(STORE.configurations["ib-main"])
    assert filled["model"]["brokerage"] == stored
    assert filled["model"]["dataProviders"]["IB"] == stored


def test_other_tools_are_left_alone() -> None:
    arguments = {"model": {"brokerage": {"id": "IB", "ib-password": "x"}}}
    assert STORE.refusal("read_live_algorithm", arguments) is None
    assert STORE.fill("read_live_algorithm", arguments) == arguments


def test_scrub_replaces_every_stored_secret_but_not_ids() -> None:
    assert (
        STORE.scrub(f"bad login trader/{PASSWORD} at IB") == "bad login [redacted]/[redacted] at IB"
    )
