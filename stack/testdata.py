"""Known test credentials the test command plants, so tests can prove they never leak."""

CANARY_USER_ID = "900417"
CANARY_API_TOKEN = "qcstack-canary-token-7c1e5a93d2b84f06"  # noqa: S105 - a planted canary
TEST_GATEWAY_TOKEN = "qcstack-test-gateway-token-3f9a61c0e27d"  # noqa: S105 - known to the tests
TEST_ADMIN_NAME = "test-admin"
TEST_ADMIN_PASSWORD = "qcstack-test-admin-password-8d2e61b4"  # noqa: S105 - known to the tests
TEST_RESPONDER_TOKEN = "qcstack-test-responder-token-5b07c9e3a1"  # noqa: S105 - known to the tests
CANARY_BROKERAGE_PASSWORD = "qcstack-canary-ib-password-9e41d7"  # noqa: S105 - a planted canary
TEST_BROKERAGES = {
    "ib-canary": {
        "id": "InteractiveBrokersBrokerage",
        "ib-user-name": "qcstack-canary-trader",
        "ib-account": "DU0000000",
        "ib-password": CANARY_BROKERAGE_PASSWORD,
        "ib-weekly-restart-utc-time": "22:00:00",
    }
}
"""The test stacks' brokerage configuration: a canary password the tests search for."""
