"""The approval pages as plain server-rendered HTML: every value escaped, no script, one inline
style allowed by its hash."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from gateway.admin.statistics import BacktestStatistics
from gateway.approvals import Approval, ApprovalState
from gateway.lockdown import LockdownState
from gateway.redact import redact

PREFIX = "/admin"
STYLE = (
    "body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}"
    "table{border-collapse:collapse}td,th{border:1px solid #999;padding:.3em .6em;text-align:left}"
    "pre{background:#f4f4f4;padding:1em;overflow:auto}.locked{background:#fdd;padding:.5em}"
    "form.inline{display:inline}button{margin-right:1em}"
)
STYLE_HASH = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode("ascii")
CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; style-src 'sha256-{STYLE_HASH}'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


def when(timestamp: float | None) -> str:
    if timestamp is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(timestamp))


def layout(title: str, body: str, admin: str | None = None, csrf: str | None = None) -> str:
    account = ""
    if admin and csrf:
        account = (
            f'<p>Signed in as <b>{escape(admin)}</b>. <a href="{PREFIX}/">Held calls</a> '
            f'<form class="inline" method="post" action="{PREFIX}/logout">'
            f'<input type="hidden" name="csrf" value="{escape(csrf)}">'
            '<button type="submit">Sign out</button></form></p>'
        )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)} - qcstack gateway</title><style>{STYLE}</style></head>"
        f"<body><h1>{escape(title)}</h1>{account}{body}</body></html>"
    )


def login_page(csrf: str, error: str = "") -> str:
    problem = f'<p class="locked">{escape(error)}</p>' if error else ""
    return layout(
        "Sign in",
        f'{problem}<form method="post" action="{PREFIX}/login">'
        f'<input type="hidden" name="csrf" value="{escape(csrf)}">'
        '<p><label>Admin name <input name="name" autocomplete="username" required></label></p>'
        '<p><label>Password <input name="password" type="password" '
        'autocomplete="current-password" required></label></p>'
        '<p><button type="submit">Sign in</button></p></form>',
    )


def deployment_fields(approval: Approval) -> list[tuple[str, str]]:
    """What a person checks before a live deployment: tool, project, compile, brokerage by id,
    node. Read from the redacted arguments (the model of qc-mcp's live-trading tools)."""
    arguments = redact(approval.arguments)
    model = arguments.get("model")
    model = model if isinstance(model, Mapping) else arguments
    brokerage = model.get("brokerage")
    brokerage_id = brokerage.get("id") if isinstance(brokerage, Mapping) else brokerage
    fields = [
        ("Tool", approval.tool),
        ("Project", model.get("projectId")),
        ("Compile", model.get("compileId")),
        ("Brokerage", brokerage_id),
        ("Node", model.get("nodeId")),
        ("LEAN version", model.get("versionId")),
    ]
    return [(label, "" if value is None else str(value)) for label, value in fields]


def lockdown_banner(lockdown: LockdownState) -> str:
    if not lockdown.locked:
        return ""
    return (
        f'<p class="locked"><b>Lockdown</b> since {escape(when(lockdown.since))} by '
        f"{escape(lockdown.by)}: {escape(lockdown.reason)}. Held calls cannot run until an "
        "admin lifts it (<code>qcstack lockdown lift</code>).</p>"
    )


def list_page(admin: str, csrf: str, approvals: Sequence[Approval], lockdown: LockdownState) -> str:
    pending = [a for a in approvals if a.state is ApprovalState.PENDING]
    if pending:
        rows = "".join(
            f'<tr><td><a href="{PREFIX}/approvals/{escape(a.id)}">{escape(a.id)}</a></td>'
            + "".join(f"<td>{escape(value)}</td>" for _, value in deployment_fields(a)[:5])
            + f"<td>{escape(when(a.created))}</td><td>{escape(when(a.expires))}</td></tr>"
            for a in reversed(pending)
        )
        table = (
            "<table><tr><th>Approval</th><th>Tool</th><th>Project</th><th>Compile</th>"
            f"<th>Brokerage</th><th>Node</th><th>Held since</th><th>Expires</th></tr>{rows}"
            "</table>"
        )
    else:
        table = "<p>No call is waiting for a decision.</p>"
    decided = [a for a in approvals if a.state is not ApprovalState.PENDING][-10:]
    history = "".join(
        f"<li>{escape(a.id)} {escape(a.tool)}: {escape(str(a.state))}"
        f"{' by ' + escape(a.decided_by) if a.decided_by else ''}</li>"
        for a in reversed(decided)
    )
    recent = f"<h2>Recently decided</h2><ul>{history}</ul>" if history else ""
    return layout(
        "Held calls", f"{lockdown_banner(lockdown)}<h2>Pending</h2>{table}{recent}", admin, csrf
    )


def statistics_section(statistics: BacktestStatistics | None, problem: str = "") -> str:
    if problem:
        return f"<h2>Latest backtest</h2><p>Not available: {escape(problem)}</p>"
    if statistics is None:
        return "<h2>Latest backtest</h2><p>This project has no backtest.</p>"
    rows = "".join(
        f"<tr><th>{escape(name)}</th><td>{escape(value)}</td></tr>"
        for name, value in statistics.statistics.items()
    )
    return (
        f"<h2>Latest backtest</h2><p>{escape(statistics.name)} ({escape(statistics.backtest_id)}"
        f"), created {escape(statistics.created)}</p><table>{rows}</table>"
    )


def detail_page(
    admin: str,
    csrf: str,
    approval: Approval,
    lockdown: LockdownState,
    statistics: str,
) -> str:
    rows = "".join(
        f"<tr><th>{escape(label)}</th><td>{escape(value)}</td></tr>"
        for label, value in deployment_fields(approval)
    )
    arguments = json.dumps(redact(approval.arguments), indent=2, sort_keys=True)
    state = (
        f"<tr><th>State</th><td>{escape(str(approval.state))}"
        f"{' by ' + escape(approval.decided_by) if approval.decided_by else ''}</td></tr>"
        f"<tr><th>Held since</th><td>{escape(when(approval.created))}</td></tr>"
        f"<tr><th>Expires</th><td>{escape(when(approval.expires))}</td></tr>"
    )
    decide = ""
    if approval.state is ApprovalState.PENDING:
        decide = "".join(
            f'<form class="inline" method="post" '
            f'action="{PREFIX}/approvals/{escape(approval.id)}/{verb}">'
            f'<input type="hidden" name="csrf" value="{escape(csrf)}">'
            f'<button type="submit" name="decision" value="{verb}">{label}</button></form>'
            for verb, label in (("approve", "Approve"), ("deny", "Deny"))
        )
    return layout(
        f"Held call {approval.id}",
        f"{lockdown_banner(lockdown)}<table>{rows}{state}</table>{decide}"
        f"{statistics}<h2>All arguments (secrets redacted)</h2><pre>{escape(arguments)}</pre>",
        admin,
        csrf,
    )


def message_page(title: str, text: str, admin: str | None = None, csrf: str | None = None) -> str:
    return layout(title, f'<p>{escape(text)}</p><p><a href="{PREFIX}/">Back</a></p>', admin, csrf)


def approval_json(approval: Approval) -> dict[str, Any]:
    """An approval as the admin API shows it: arguments redacted (again), times as numbers."""
    return {
        "id": approval.id,
        "tool": approval.tool,
        "state": str(approval.state),
        "arguments": redact(approval.arguments),
        "digest": approval.digest,
        "created": approval.created,
        "expires": approval.expires,
        "decided_by": approval.decided_by,
        "decided_at": approval.decided_at,
        "summary": dict(deployment_fields(approval)),
    }
