"""The stdio bridge: how a client that launches a command (Claude Desktop) reaches the gateway.

Run on the client's machine: `.venv/bin/python -m gateway.bridge`. It speaks MCP on stdin and
stdout and forwards everything to the gateway's Streamable HTTP endpoint with the bearer token,
which it reads from a file so it never sits in the client's configuration.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

from fastmcp.client.transports import StreamableHttpTransport
from fastmcp.server import create_proxy
from pydantic import ValidationError

from gateway.settings import BridgeSettings, SettingsError, read_secret


def check_gateway(url: str, token: str) -> None:
    """Fails at start, saying why, when the gateway is unreachable or refuses the token: behind
    the bridge, the client would only see a bare error response."""
    request = urllib.request.Request(  # noqa: S310 -- the operator's own gateway URL
        url,
        data=b"{}",
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        urllib.request.urlopen(request, timeout=10).close()  # noqa: S310
    except urllib.error.HTTPError as error:
        if error.code == 401:
            raise SettingsError(f"the gateway at {url} refused the token (401)") from None
    except (urllib.error.URLError, OSError) as error:
        raise SettingsError(f"cannot reach the gateway at {url}: {error}") from None


def main() -> None:
    try:
        settings = BridgeSettings()  # type: ignore[call-arg]  # token_file: from the environment
        token = read_secret(settings.token_file, "the gateway's bearer token").decode()
        check_gateway(settings.url, token)
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
