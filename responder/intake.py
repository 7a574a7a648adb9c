"""Reads one POSTed alert: the body bounded, its type and JSON checked, the model validated; what
fails becomes a Rejection that says why and carries what the audit log keeps of it."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request

from responder.alert import FalcoAlert

EXCERPT_CHARS = 160
"""How much of a rejected body the audit log keeps: enough to recognise it, no more."""
REASON_CHARS = 500
"""The longest reason given (and recorded) for a refusal."""


@dataclass(frozen=True)
class Rejection:
    """An input the responder refused, with the HTTP status it answers."""

    status: int
    reason: str
    size: int
    """The body's length: its Content-Length when stated, else the bytes read."""
    sha256: str
    """The hash of the bytes read (all of them, but for a body over the limit: the first
    `hashed` bytes)."""
    hashed: int
    excerpt: str
    content_type: str

    def record(self) -> dict[str, Any]:
        """The audit entry's fields for it."""
        return {
            "event": "falco-alert-rejected",
            "status": self.status,
            "reason": self.reason[:REASON_CHARS],
            "bytes": self.size,
            "sha256": self.sha256,
            "sha256_bytes": self.hashed,
            "excerpt": self.excerpt,
            "content_type": safe_excerpt(self.content_type.encode()),
        }


def safe_excerpt(body: bytes) -> str:
    """The body's start as printable ASCII: anything else (control characters, escapes that
    could forge log lines, non-ASCII look-alikes) becomes "?"."""
    text = body[: EXCERPT_CHARS * 4].decode("utf-8", errors="replace")[:EXCERPT_CHARS]
    return "".join(c if c.isascii() and c.isprintable() else "?" for c in text)


async def read_body(request: Request, max_bytes: int) -> tuple[bytes, bool]:
    """Up to max_bytes + 1 bytes of the body, and whether it went over: a larger one is not read
    further."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            return bytes(body[: max_bytes + 1]), True
    return bytes(body), False


def summary_of(details: ValidationError) -> str:
    """Pydantic's errors as one line: where and what, never the input values."""
    return "; ".join(
        f"{'.'.join(str(p) for p in error['loc']) or 'body'}: {error['msg']}"
        for error in details.errors(include_url=False, include_input=False)[:5]
    )


async def read_alert(request: Request, max_bytes: int) -> FalcoAlert | Rejection:
    content_type = request.headers.get("content-type", "")
    declared = request.headers.get("content-length", "")
    body, too_big = await read_body(request, max_bytes)

    def refuse(status: int, reason: str) -> Rejection:
        size = int(declared) if declared.isdigit() else len(body)
        digest = hashlib.sha256(body).hexdigest()
        excerpt = safe_excerpt(body)
        return Rejection(
            status, reason[:REASON_CHARS], size, digest, len(body), excerpt, content_type
        )

    if too_big:
        return refuse(413, f"the alert is over {max_bytes} bytes (setting max_body_bytes)")
    if content_type.split(";")[0].strip().lower() != "application/json":
        return refuse(415, "send the alert as application/json (Falco's json_output: true)")
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return refuse(400, "the body is not JSON")
    if not isinstance(document, dict):
        return refuse(422, "the alert must be a JSON object")
    try:
        return FalcoAlert.model_validate(document)
    except ValidationError as details:
        return refuse(422, f"not a Falco alert: {summary_of(details)}")
