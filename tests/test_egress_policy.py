"""The egress proxy's policy.conf: rendered from settings, host:port pairs kept, no injection."""

from __future__ import annotations

import re
from ipaddress import IPv4Network
from pathlib import Path

import pytest
from pydantic import ValidationError

from stack.egress import (
    HEALTH_PROBE_HOST,
    HEALTH_PROBE_STATUS,
    HEALTHCHECK_COMMAND,
    POLICY_PATH,
    render_policy,
)
from stack.settings import EgressDestination, Settings

SQUID_CONF = Path(__file__).resolve().parent.parent / "images" / "egress-proxy" / "squid.conf"
CLIENTS = IPv4Network("10.231.253.0/28")


def directives(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def acls(text: str) -> dict[str, list[str]]:
    """ACL name -> [type, flags..., values...] for every `acl` line."""
    return {d[1]: d[2:] for d in directives(text) if d[0] == "acl"}


def allow_rules(text: str) -> list[list[str]]:
    return [d[2:] for d in directives(text) if d[:2] == ["http_access", "allow"]]


def allowed_pairs(text: str) -> set[tuple[str, int]]:
    """The (host, port) pairs the policy lets through, read back from its allow rules."""
    defined = acls(text)
    defined["CONNECT"] = ["method", "CONNECT"]  # squid's predefined ACL
    pairs: set[tuple[str, int]] = set()
    for rule in allow_rules(text):
        hosts = [defined[a][2:] for a in rule if defined[a][:2] == ["dstdomain", "-n"]]
        ports = [defined[a][1:] for a in rule if defined[a][0] == "port"]
        assert len(hosts) == len(ports) == 1, rule
        pairs |= {(h, int(p)) for h in hosts[0] for p in ports[0]}
    return pairs


def test_default_settings_allow_quantconnect_443_from_the_egress_subnet_only() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    text = render_policy(settings.egress_destinations, settings.egress_subnet)
    assert acls(text)["qcstack_clients"] == ["src", "10.231.253.0/28"]
    assert allowed_pairs(text) == {("www.quantconnect.com", 443)}
    for rule in allow_rules(text):
        assert rule[:2] == ["qcstack_clients", "CONNECT"]
    # Clients outside the subnet are denied before any allow rule.
    lines = [" ".join(d) for d in directives(text) if d[0] == "http_access"]
    deny_client = lines.index("http_access deny !qcstack_clients qcstack_denied_client")
    assert all(i > deny_client for i, line in enumerate(lines) if " allow " in line)


def test_each_host_is_allowed_on_its_own_port_only() -> None:
    text = render_policy(
        [
            EgressDestination("www.quantconnect.com", 443),
            EgressDestination("api.example.org", 8443),
            EgressDestination("www.quantconnect.com", 8080),
        ],
        CLIENTS,
    )
    assert allowed_pairs(text) == {
        ("www.quantconnect.com", 443),
        ("api.example.org", 8443),
        ("www.quantconnect.com", 8080),
    }
    # Three separate rules, never one host list crossed with one port list.
    assert len(allow_rules(text)) == 3
    for values in acls(text).values():
        if values[0] in ("dstdomain", "port"):
            assert len(values) == (3 if values[0] == "dstdomain" else 2)


def test_hosts_never_reverse_resolve_and_every_allow_is_logged_as_allowed() -> None:
    text = render_policy([EgressDestination("www.quantconnect.com", 443)], CLIENTS)
    defined = acls(text)
    for values in defined.values():
        if values[0] == "dstdomain":
            assert values[1] == "-n"
    for rule in allow_rules(text):
        marker = defined[rule[-1]]
        assert marker[0] == "annotate_transaction" and "decision=allowed" in marker


def test_health_probe_is_denied_with_the_marker_status_from_loopback_only() -> None:
    text = render_policy([EgressDestination("www.quantconnect.com", 443)], CLIENTS)
    rules = [d for d in directives(text) if d[0] == "http_access"]
    assert rules[0] == [
        "http_access",
        "deny",
        "qcstack_health_client",
        "CONNECT",
        "qcstack_health_probe",
        "qcstack_health_marker",
    ]
    assert [
        "deny_info",
        f"{HEALTH_PROBE_STATUS}:http://{HEALTH_PROBE_HOST}/",
        "qcstack_health_marker",
    ] in directives(text)
    # squid.conf defines the probe's ACLs; the health check command asks for exactly that.
    fixed = acls(SQUID_CONF.read_text())
    assert fixed["qcstack_health_client"] == ["src", "127.0.0.1/32"]
    assert fixed["qcstack_health_probe"] == ["dstdomain", "-n", HEALTH_PROBE_HOST]
    assert HEALTHCHECK_COMMAND[-1] == str(HEALTH_PROBE_STATUS)
    assert f"{HEALTH_PROBE_HOST}:443" in HEALTHCHECK_COMMAND
    assert HEALTHCHECK_COMMAND[-2].startswith("http://127.0.0.1:3128/")


def test_squid_conf_includes_the_policy_between_its_fixed_denials() -> None:
    rules = [" ".join(d) for d in directives(SQUID_CONF.read_text())]
    include = rules.index(f"include {POLICY_PATH}")
    assert rules.index("http_access deny !CONNECT qcstack_denied_not_connect") < include
    assert rules.index("http_access deny all qcstack_denied_default") == include + 1
    assert not any(r.startswith("http_access allow") for r in rules)
    for fixed in ("cache deny all", "via off", "forwarded_for delete", "http_port 3128"):
        assert fixed in rules
    assert not any(r.startswith("cache_dir") for r in rules)


@pytest.mark.parametrize(
    "entry",
    [
        "www.quantconnect.com:443 all",
        "www.quantconnect.com\nhttp_access allow all:443",
        "www.quantconnect.com:443\nhttp_access allow all",
        "www.quantconnect.com:443#",
        '"www.quantconnect.com":443',
        ".quantconnect.com:443",
        "*.quantconnect.com:443",
        "all:443",
        "10.0.0.1:443",
        "[::1]:443",
        "www.quantconnect.com:0",
        "www.quantconnect.com:443-445",
        "www.quantconnect.com",
        "-n:443",
    ],
)
def test_squid_syntax_cannot_get_into_the_policy_through_settings(entry: str) -> None:
    with pytest.raises(ValidationError):
        Settings(_env_file=None, egress_allow=(entry,))  # type: ignore[call-arg]


def test_render_refuses_what_settings_would_refuse() -> None:
    for bad in (
        EgressDestination("www.quantconnect.com all", 443),
        EgressDestination("www.quantconnect.com\nhttp_access allow all", 443),
        EgressDestination("10.0.0.1", 443),
        EgressDestination("WWW.QuantConnect.com", 443),
    ):
        with pytest.raises(ValueError):
            render_policy([bad], CLIENTS)
    with pytest.raises(ValueError):
        render_policy([], CLIENTS)


def test_rendered_policy_is_plain_ascii_tokens() -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, egress_allow=("www.quantconnect.com:443", "a-b.example.org:8443")
    )
    text = render_policy(settings.egress_destinations, settings.test_egress_subnet)
    for d in directives(text):
        for token in d:
            assert re.fullmatch(r"[A-Za-z0-9_.:/=!*-]+", token), token
