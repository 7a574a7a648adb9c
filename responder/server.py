"""Starts the responder: settings, token and audit log checked first (fail closed), then HTTP."""

from __future__ import annotations

import sys

from pydantic import ValidationError

from responder.app import Responder, build_app
from responder.lockdown import LockdownCaller
from responder.repeats import Repeats
from responder.settings import ResponderSettings
from responder.tracing import ResponderTracing
from servicebase.audit import AuditError, AuditLog
from servicebase.secrets import SettingsError, read_secret
from servicebase.serving import background_logging, serve


def settings_problem(error: ValidationError) -> str:
    """Which QCSTACK_RESPONDER_* setting is wrong and why, without echoing its value."""
    return "; ".join(
        f"QCSTACK_RESPONDER_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
        for e in error.errors(include_url=False, include_input=False)
    )


def main() -> None:
    try:
        settings = ResponderSettings()
    except ValidationError as error:
        sys.exit(f"qcstack responder: bad setting: {settings_problem(error)}")
    try:
        token = read_secret(settings.token_file, "the responder's token (secret responder_token)")
        audit = AuditLog(settings.audit_path)
    except (SettingsError, AuditError) as error:
        sys.exit(f"qcstack responder: {error}")
    with background_logging():
        tracing = ResponderTracing.start(settings.otel_endpoint, capacity=settings.otel_queue_spans)
        caller = LockdownCaller(settings, token, audit.append)
        responder = Responder(settings, audit, caller, Repeats(settings.suppress_seconds), tracing)
        try:
            serve(build_app(responder), settings.host, settings.port)
        finally:
            caller.stop()
            tracing.shutdown()
