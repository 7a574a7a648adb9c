"""A QuantConnect API double for the tests: real request signing, real response shapes, a record.

Stdlib only, so it runs inside a container from the qc-mcp image (`python3 -c`). It is a test
double, never the real API: it answers the endpoints the tests use, refuses requests the way
the real API does (HTTP 200 with `success: false`, as QuantConnect's API and the server's
RestResponse model show), and prints one JSON line per request it received, so tests can assert
on what reached "QuantConnect" (for example that no credential travelled in the clear).
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import ssl
import sys
import time
from dataclasses import dataclass, field
from typing import Any

API_PREFIX = "/api/v2"
# The real API's window is not documented; the double's is deliberately narrow.
TIMESTAMP_WINDOW_SECONDS = 300

ACCOUNT = {
    "organizationId": "5cad178b20a1d52567b534553413b691",
    "creditBalance": 1234.5,
    "card": {"brand": "visa", "expiration": "12/27", "last4": "4242"},
    "success": True,
}
PROJECTS = {
    "projects": [
        {
            "projectId": 23456789,
            "organizationId": "5cad178b20a1d52567b534553413b691",
            "name": "qcstack double project",
            "modified": "2026-11-01 12:00:00",
            "created": "2026-10-01 12:00:00",
            "ownerId": 900417,
            "language": "Py",
            "collaborators": [],
            "description": "served by the QuantConnect API double",
        }
    ],
    "versions": [],
    "success": True,
}
LIVE_CREATED = {
    "responseCode": "Success",
    "source": "api",
    "deployId": "L-141106d80de1da9a9f85ea07c06bf7b6",
    "versionId": 17202,
    "projectId": 23456789,
    "live": {"deployId": "L-141106d80de1da9a9f85ea07c06bf7b6", "status": "Running"},
    "success": True,
}
BACKTESTS = {
    "backtests": [
        {
            "backtestId": "26c7bb06b8487cff1c7b3c44652b30f1",
            "status": "Completed.",
            "name": "double momentum backtest",
            "created": "2026-11-20 10:00:00",
            "sharpeRatio": 1.42,
            "drawdown": 0.18,
            "netProfit": 0.31,
            "trades": 214,
        }
    ],
    "count": 1,
    "success": True,
}
RESPONSES: dict[str, dict[str, Any]] = {
    "/authenticate": {"success": True},
    "/account/read": ACCOUNT,
    "/projects/read": PROJECTS,
    "/live/create": LIVE_CREATED,
    "/backtests/list": BACKTESTS,
}


def signature(user_id: str, token: str, timestamp: str) -> str:
    """The Authorization header value QuantConnect expects for this user, token and time."""
    hashed = hashlib.sha256(f"{token}:{timestamp}".encode()).hexdigest()
    return "Basic " + base64.b64encode(f"{user_id}:{hashed}".encode()).decode("ascii")


def claimed_user_id(headers: Any) -> str:
    """The user id the Authorization header claims, or "" when it is not Basic user:hash."""
    authorization = headers.get("Authorization") or ""
    try:
        return base64.b64decode(authorization.removeprefix("Basic ")).decode().split(":")[0]
    except (ValueError, UnicodeDecodeError):
        return ""


def authentication_error(headers: Any, users: dict[str, str], now: float) -> str | None:
    """Why the real API would refuse these headers, or None when they are correctly signed."""
    timestamp = headers.get("Timestamp") or ""
    if not timestamp.isdigit() or abs(now - int(timestamp)) > TIMESTAMP_WINDOW_SECONDS:
        return f"Invalid timestamp, value received: {timestamp or 0}"
    authorization = headers.get("Authorization") or ""
    user_id = claimed_user_id(headers)
    token = users.get(user_id)
    if token is None or authorization != signature(user_id, token, timestamp):
        return f"Hash doesn't match. UID: {user_id} Timestamp: {timestamp}"
    return None


@dataclass
class ApiDouble:
    """The double's state: who may call it, and what it received."""

    users: dict[str, str]
    received: list[dict[str, Any]] = field(default_factory=list)

    def answer(self, path: str, headers: Any, body: bytes) -> dict[str, Any]:
        error = authentication_error(headers, self.users, time.time())
        record = {
            "path": path,
            "headers": {k.lower(): v for k, v in headers.items()},
            "body": body.decode("utf-8", "replace"),
            "user_id": claimed_user_id(headers),
            "refused": error,
        }
        self.received.append(record)
        print(json.dumps({"qc_api_double": record}), flush=True)
        if error:
            return {"success": False, "errors": [error]}
        endpoint = path.removeprefix(API_PREFIX)
        if not path.startswith(API_PREFIX) or endpoint not in RESPONSES:
            return {"success": False, "errors": ["Endpoint not found"]}
        return RESPONSES[endpoint]


def handler_for(double: ApiDouble) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            payload = json.dumps(double.answer(self.path, self.headers, body)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            """The JSON record above is the log."""

    return Handler


def serve(double: ApiDouble, port: int, certfile: str | None, keyfile: str | None) -> None:
    """Serves HTTPS when given a certificate (in the stack), plain HTTP otherwise (unit tests)."""
    server = http.server.ThreadingHTTPServer(("0.0.0.0", port), handler_for(double))  # noqa: S104
    if certfile:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(certfile, keyfile)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    server.serve_forever()


def read_value(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read().strip()


if __name__ == "__main__":
    # argv: port user_id_file token_file [certfile keyfile]; the files are the stack's secrets.
    port, user_id_file, token_file, *tls = sys.argv[1:]
    users = {read_value(user_id_file): read_value(token_file)}
    serve(ApiDouble(users), int(port), *(tls or [None, None]))
