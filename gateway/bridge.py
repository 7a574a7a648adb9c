"""The stdio bridge: how a client that launches a command (Claude Desktop) reaches the gateway.

Run on the client's machine: `.venv/bin/python -m gateway.bridge`. It speaks MCP on stdin and
stdout and forwards everything to the gateway's Streamable HTTP endpoint with the bearer token,
which it reads from a file so it never sits in the client's configuration.
"""

from __future__ import annotations

import sys

from fastmcp.client.transports import StreamableHttpTransport
from fastmcp.server import create_proxy
from pydantic import ValidationError

from gateway.settings import BridgeSettings, SettingsError, read_secret


def main() -> None:
    try:
        settings = BridgeSettings()  # type: ignore[call-arg]  # token_file: from the environment
        token = read_secret(settings.token_file, "the gateway's bearer token").decode()
    except ValidationError as error:
        sys.exit(f"qcstack bridge: set QCSTACK_BRIDGE_TOKEN_FILE (and QCSTACK_BRIDGE_URL): {error}")
    except SettingsError as error:
        sys.exit(f"qcstack bridge: {error}")
    bridge = create_proxy(
        StreamableHttpTransport(settings.url, auth=token),
        name="qcstack",
        # A refused token or a gateway that is down reaches the client as an error, not as an
        # empty tool list.
        provider_error_strategy="raise",
    )
    bridge.run(transport="stdio", show_banner=False)


if __name__ == "__main__":
    main()
