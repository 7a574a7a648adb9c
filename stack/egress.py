"""Renders the egress proxy's allow-list (policy.conf, included by squid.conf) from settings."""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Network

from stack.settings import EgressDestination, parse_destination

POLICY_PATH = "/etc/squid/policy.conf"
"""Where the image's squid.conf includes the policy from; compose mounts it there read-only."""

HEALTH_PROBE_HOST = "policy.qcstack.invalid"
"""A name no resolver answers (RFC 6761 .invalid); squid never looks it up: dstdomain -n."""

HEALTH_PROBE_STATUS = 307
"""Squid answers the loopback probe with this only when this module's policy is loaded; its own
denials are 403, so a squid with any other policy (or none) fails the health check."""

HEALTHCHECK_COMMAND = (
    "/usr/local/bin/healthcheck",
    "-method",
    "CONNECT",
    "-target",
    f"{HEALTH_PROBE_HOST}:443",
    "http://127.0.0.1:3128/",
    str(HEALTH_PROBE_STATUS),
)
"""The proxy's health check: a CONNECT that the policy denies with its marker status. It proves
squid answers HTTP with this policy loaded and never opens a tunnel or looks up a name."""


def render_policy(destinations: Sequence[EgressDestination], clients: IPv4Network) -> str:
    """policy.conf: CONNECT from `clients` to each destination's host on that destination's port
    alone (the pairs are kept: host A on its own port, never on B's), and a loopback health probe.
    squid.conf denies everything else before and after this file."""
    if not destinations:
        raise ValueError("the egress policy needs at least one destination")
    lines = [
        "# Rendered by qcstack (stack/egress.py) from settings; do not edit. Included by the",
        "# egress proxy's squid.conf after its fixed denials (only CONNECT gets here) and",
        "# before its final `http_access deny all`.",
        "",
        f"# Health check (RUN-11): squid.conf's loopback probe for {HEALTH_PROBE_HOST}",
        f"# is denied with {HEALTH_PROBE_STATUS}, the sign that this policy is loaded.",
        "acl qcstack_health_marker annotate_transaction decision=denied rule=health-check",
        "http_access deny qcstack_health_client CONNECT qcstack_health_probe qcstack_health_marker",
        f"deny_info {HEALTH_PROBE_STATUS}:http://{HEALTH_PROBE_HOST}/ qcstack_health_marker",
        "",
        "# NET-06: clients from the stack's egress subnet alone; the proxy is no open proxy.",
        f"acl qcstack_clients src {clients}",
        "acl qcstack_denied_client annotate_transaction decision=denied rule=client-not-allowed",
        "http_access deny !qcstack_clients qcstack_denied_client",
    ]
    for number, destination in enumerate(destinations, start=1):
        # Settings validated it already; parsing again keeps anything squid would read as syntax
        # (spaces, quotes, wildcards, IP literals) out of the file whatever the caller passes.
        host, port = parse_destination(str(destination))
        if (host, port) != destination:
            raise ValueError(f"{destination!r} is not in canonical host:port form")
        acl = f"qcstack_dst{number}"
        lines += [
            "",
            f"# NET-04: {host}:{port}",
            f"acl {acl}_host dstdomain -n {host}",
            f"acl {acl}_port port {port}",
            f"acl {acl}_allowed annotate_transaction decision=allowed rule={host}:{port}",
            f"http_access allow qcstack_clients CONNECT {acl}_host {acl}_port {acl}_allowed",
        ]
    return "\n".join(lines) + "\n"
