"""The QuantConnect API double checks the real signing scheme and answers in the real shapes."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from typing import Any

import pytest

from infra_tests.doubles.qc_api import ApiDouble, handler_for, signature
from stack.testdata import CANARY_API_TOKEN, CANARY_USER_ID


@pytest.fixture
def double() -> Iterator[tuple[ApiDouble, str]]:
    state = ApiDouble({CANARY_USER_ID: CANARY_API_TOKEN})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(state))
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    ).start()
    yield state, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def post(url: str, headers: dict[str, str]) -> dict[str, Any]:
    request = urllib.request.Request(url, data=b"{}", headers=headers, method="POST")  # noqa: S310
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
        answer: dict[str, Any] = json.loads(response.read())
        return answer


def signed(token: str = CANARY_API_TOKEN, at: float | None = None) -> dict[str, str]:
    timestamp = str(int(time.time() if at is None else at))
    return {"Timestamp": timestamp, "Authorization": signature(CANARY_USER_ID, token, timestamp)}


@pytest.mark.parametrize(
    "endpoint",
    ["/authenticate", "/account/read", "/projects/read", "/live/create", "/backtests/list"],
)
def test_correctly_signed_request_gets_the_real_response_shape(
    double: tuple[ApiDouble, str], endpoint: str
) -> None:
    _, url = double
    assert post(f"{url}/api/v2{endpoint}", signed())["success"] is True


def test_account_answer_carries_the_fields_the_server_reads(
    double: tuple[ApiDouble, str],
) -> None:
    _, url = double
    account = post(f"{url}/api/v2/account/read", signed())
    assert set(account) >= {"organizationId", "creditBalance", "card"}


def test_wrong_token_is_refused_as_the_real_api_refuses_it(double: tuple[ApiDouble, str]) -> None:
    _, url = double
    wrong = signed(token="not-the-token")  # noqa: S106
    answer = post(f"{url}/api/v2/account/read", wrong)
    assert answer["success"] is False
    assert answer["errors"][0].startswith("Hash doesn't match.")


@pytest.mark.parametrize("age_seconds", [3600, -3600])
def test_stale_or_future_timestamp_is_refused(
    double: tuple[ApiDouble, str], age_seconds: int
) -> None:
    _, url = double
    answer = post(f"{url}/api/v2/account/read", signed(at=time.time() - age_seconds))
    assert answer["success"] is False
    assert answer["errors"][0].startswith("Invalid timestamp")


def test_unsigned_request_is_refused(double: tuple[ApiDouble, str]) -> None:
    _, url = double
    answer = post(f"{url}/api/v2/account/read", {})
    assert answer == {"success": False, "errors": ["Invalid timestamp, value received: 0"]}


def test_unknown_endpoint_is_not_found(double: tuple[ApiDouble, str]) -> None:
    _, url = double
    assert post(f"{url}/api/v2/live/delete", signed())["errors"] == ["Endpoint not found"]


def test_double_records_what_it_received_and_never_sees_the_token(
    double: tuple[ApiDouble, str],
) -> None:
    state, url = double
    post(f"{url}/api/v2/projects/read", signed())
    assert [r["path"] for r in state.received] == ["/api/v2/projects/read"]
    assert CANARY_API_TOKEN not in json.dumps(state.received)
