"""The one settings object for qcstack, built once by the command line and passed down."""

from __future__ import annotations

import json
import os
import re
from ipaddress import IPv4Network, ip_address
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent

# Docker's default address pools (172.17-172.31 and 192.168, unless daemon.json changes them):
# networks that name no subnet get one from these, so a fixed subnet there collides sooner or later.
DOCKER_DEFAULT_POOLS = (IPv4Network("172.16.0.0/12"), IPv4Network("192.168.0.0/16"))
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$"
)


class EgressDestination(NamedTuple):
    """One host name and TCP port the egress proxy lets qc-mcp open a tunnel to."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def parse_destination(entry: str) -> EgressDestination:
    """Reads `host:port`; refuses IP literals, wildcards and anything but a plain DNS name."""
    host, separator, port = entry.strip().lower().rpartition(":")
    if not separator or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{entry!r} is not host:port with a port from 1 to 65535")
    try:
        ip_address(host.strip("[]"))
    except ValueError:
        pass
    else:
        raise ValueError(f"{entry!r} names an IP address; allow a DNS name, never an address")
    if not _HOSTNAME.match(host):
        raise ValueError(f"{entry!r}: {host!r} is not a fully qualified DNS name (no wildcards)")
    return EgressDestination(host, int(port))


def service_environment(prefix: str, values: dict[str, Any]) -> dict[str, str]:
    """A service's settings as the variables its container reads (JSON for non-strings)."""
    return {
        f"{prefix}{name.upper()}": v if isinstance(v, str) else json.dumps(v)
        for name, v in sorted(values.items())
    }


def checked_service_settings(
    service: str, model: type[BaseSettings], fixed: set[str], value: dict[str, Any]
) -> dict[str, Any]:
    """A service's own settings as given in ours: checked by its settings class; the ones its
    compose service sets itself (`fixed`) refused."""
    if fixed & set(value):
        raise ValueError(
            f"{sorted(fixed & set(value))} are set by the compose file, not by settings"
        )
    try:
        model(**value)
    except ValidationError as error:
        raise ValueError(f"{service} settings: {error}") from error
    return value


def env_file(variables: dict[str, str]) -> str:
    """Variables as the lines of a compose env_file."""
    return "".join(f"{name}={value}\n" for name, value in variables.items())


class Settings(BaseSettings):
    """Every knob qcstack has. Read from QCSTACK_* variables and then `qcstack.env`."""

    model_config = SettingsConfigDict(
        env_prefix="QCSTACK_",
        env_file=REPO_ROOT / "qcstack.env",
        extra="forbid",
        frozen=True,
    )

    project_name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")] = "qcstack"
    """Compose project name of the running stack."""

    test_project_name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")] = "qcstack-test"
    """Compose project name the test command brings up; never the operator's stack."""

    build_dir: Path = REPO_ROOT / "build"
    """Fetched inputs (wheelhouse, base rootfs) and staged build contexts."""

    debian_suite: str = "bookworm"
    debian_mirror: str = "http://deb.debian.org/debian"

    base_image: str = ""
    """A pulled base image with python3.11 and /bin/sh to build from. Empty: build one from
    Debian packages with debootstrap (the default, and the only way on an offline machine)."""

    ca_bundle: Path = Path("/etc/ssl/certs/ca-certificates.crt")
    """CA bundle that pip trusts when fetching wheels (TLS-inspecting proxies need their own)."""

    go_proxy: str = ""
    """GOPROXY for fetching the collector's Go modules (otel/manifest.yaml); empty: Go's default.
    Each module is still checked against otel/go.sum and Go's checksum database."""

    otel_export_endpoint: str = ""
    """An OTLP/HTTP endpoint of your own (https://host[:port][/path]) that the collector sends the
    redacted traces to, besides its file; empty (the default): no export at all."""

    image_tag: Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")] = "local"

    secrets_dir: Path = REPO_ROOT / "secrets"
    """Folder holding the QuantConnect credentials as files: qc_user_id, qc_api_token."""

    egress_allow: tuple[str, ...] = ("www.quantconnect.com:443",)
    """The only destinations qc-mcp may reach, as `host:port`, through the egress proxy (NET)."""

    egress_subnet: IPv4Network = IPv4Network("10.231.253.0/28")
    """Subnet of the operator stack's `egress` network; the proxy serves clients from it alone,
    so it is no open proxy for the outside network. Pick a free one if this collides."""

    test_egress_subnet: IPv4Network = IPv4Network("10.231.254.0/28")
    """The same for the test stacks, so tests can run beside the operator's stack."""

    gateway_port: int = Field(default=8080, ge=1024, le=65535)
    """The host port, on 127.0.0.1 only, where MCP clients reach the gateway."""

    test_gateway_port: int = Field(default=18080, ge=1024, le=65535)
    """The same for the test stacks, so tests can run beside the operator's stack."""

    responder_port: int = Field(default=8079, ge=1024, le=65535)
    """The host port, on 127.0.0.1 only, where Falco's http_output posts alerts to the responder."""

    test_responder_port: int = Field(default=18079, ge=1024, le=65535)
    """The same for the test stacks, so tests can run beside the operator's stack."""

    mutation_lanes: int = Field(default=2, ge=1, le=4)
    """How many mutant stacks the mutation check runs side by side. Lane 0 takes the test stacks'
    subnet and ports; lane k the k-th /28 after test_egress_subnet and ports 100*k above the test
    ports. Each stack wants about one CPU while it starts."""

    gateway: dict[str, Any] = {}
    """The gateway's own settings by name (gateway/settings.py), e.g. {"profile": "paper"};
    checked here, handed to the gateway container as QCSTACK_GATEWAY_* variables."""

    responder: dict[str, Any] = {}
    """The responder's own settings by name (responder/settings.py), e.g.
    {"lockdown_priority": "error"}; checked here, handed to its container as
    QCSTACK_RESPONDER_* variables."""

    falco: Literal["repository", "package", "off"] = "repository"
    """How the deploy puts Falco on the VM (HOST-07): from Falco's apt repository (its key pinned
    by fingerprint, the package by version), from a .deb on the controller (`falco_package`,
    checked by `falco_package_sha256`; for air-gapped hosts), or not at all."""

    falco_package: Path | None = None
    """With falco=package: the Falco .deb on the controller that the deploy uploads."""

    falco_package_sha256: str = ""
    """With falco=package: the .deb's sha256 (64 hex digits), checked on the VM before install."""

    test_hosts: str = "local://"
    """testinfra host spec the infra suites run against (local:// or ssh://user@vm)."""

    test_vm_name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")] = "qcstack-vm"
    """Container, network and volume name of the test VM the deploy tests run against."""

    test_vm_subnet: IPv4Network = IPv4Network("10.231.244.0/24")
    """Subnet of the test VM's own Docker network; the controller reaches its sshd there."""

    @field_validator("egress_allow")
    @classmethod
    def _destinations(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("allow at least one destination (www.quantconnect.com:443)")
        return tuple(str(parse_destination(entry)) for entry in value)

    @field_validator("egress_subnet", "test_egress_subnet", "test_vm_subnet")
    @classmethod
    def _room_for_the_stack(cls, value: IPv4Network) -> IPv4Network:
        if value.prefixlen > 28 or not value.is_private:
            raise ValueError(f"{value} must be a private subnet of at least 16 addresses (/28)")
        for pool in DOCKER_DEFAULT_POOLS:
            if value.overlaps(pool):
                raise ValueError(
                    f"{value} is inside {pool}, where Docker picks subnets for networks that name "
                    "none: sooner or later one of them takes it and the stack cannot start. "
                    "Pick a subnet outside 172.16.0.0/12 and 192.168.0.0/16"
                )
        return value

    @field_validator("falco_package_sha256")
    @classmethod
    def _sha256(cls, value: str) -> str:
        if value and not re.fullmatch(r"[0-9a-f]{64}", value.strip().lower()):
            raise ValueError(
                f"falco_package_sha256 {value!r} is not a sha256 (64 hex digits): take it from "
                "`sha256sum` of the .deb, or from Falco's release page"
            )
        return value.strip().lower()

    @model_validator(mode="after")
    def _falco_package(self) -> Settings:
        if self.falco != "package":
            return self
        package = self.falco_package
        if package is None:
            raise ValueError(
                "falco=package needs falco_package (QCSTACK_FALCO_PACKAGE): the path of the Falco "
                ".deb on this machine"
            )
        if not package.is_file() or not os.access(package, os.R_OK):
            raise ValueError(
                f"falco_package {package} is not a readable file: QCSTACK_FALCO_PACKAGE must name "
                "the Falco .deb on this machine"
            )
        if not self.falco_package_sha256:
            raise ValueError(
                "falco=package needs falco_package_sha256 (QCSTACK_FALCO_PACKAGE_SHA256): the "
                f"sha256 of {package}, checked on the VM before it is installed"
            )
        return self

    @field_validator("gateway")
    @classmethod
    def _gateway_settings(cls, value: dict[str, Any]) -> dict[str, Any]:
        from gateway.settings import GatewaySettings

        fixed = {
            "host",
            "port",
            "upstream_url",
            "state_dir",
            "token_file",
            "admins_file",
            "responder_token_file",
            "otel_endpoint",
        }
        return checked_service_settings("gateway", GatewaySettings, fixed, value)

    def gateway_environment(self) -> dict[str, str]:
        """The gateway's settings as the variables its container reads (JSON for non-strings)."""
        return service_environment("QCSTACK_GATEWAY_", self.gateway)

    @field_validator("responder")
    @classmethod
    def _responder_settings(cls, value: dict[str, Any]) -> dict[str, Any]:
        from responder.settings import ResponderSettings

        fixed = {"host", "port", "gateway_url", "state_dir", "token_file", "otel_endpoint"}
        return checked_service_settings("responder", ResponderSettings, fixed, value)

    def responder_environment(self) -> dict[str, str]:
        """The responder's settings as the variables its container reads."""
        return service_environment("QCSTACK_RESPONDER_", self.responder)

    @field_validator("otel_export_endpoint")
    @classmethod
    def _export_endpoint(cls, value: str) -> str:
        if not value:
            return value
        url = urlsplit(value)
        if url.scheme != "https" or not url.hostname or url.username or url.password:
            raise ValueError(
                f"otel_export_endpoint {value!r} must be an https:// URL with a host name and no "
                "user or password in it (traces leave the stack: never in clear text)"
            )
        if url.query or url.fragment:
            raise ValueError(f"otel_export_endpoint {value!r}: no query or fragment")
        parse_destination(f"{url.hostname}:{url.port or 443}")
        return value

    def otel_environment(self) -> dict[str, str]:
        """Variables the collector's container reads: the export endpoint, when one is set."""
        if not self.otel_export_endpoint:
            return {}
        return {"QCSTACK_OTEL_EXPORT_ENDPOINT": self.otel_export_endpoint}

    @property
    def otel_configs(self) -> tuple[str, ...]:
        """The collector's --config files inside its image, in order: the export is added only
        when an endpoint is set."""
        configs: tuple[str, ...] = ("/etc/otelcol/collector.yaml",)
        if self.otel_export_endpoint:
            configs += ("/etc/otelcol/export-otlphttp.yaml",)
        return configs

    @field_validator("ca_bundle", "build_dir", "secrets_dir", "falco_package")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        return None if value is None else value.expanduser().resolve()

    @property
    def repo_root(self) -> Path:
        return REPO_ROOT

    @property
    def seccomp_dir(self) -> Path:
        """The recorded syscalls and the qc-mcp.json profile compose gives the server."""
        return REPO_ROOT / "seccomp"

    @property
    def compose_file(self) -> Path:
        return REPO_ROOT / "compose" / "compose.yaml"

    @property
    def egress_destinations(self) -> tuple[EgressDestination, ...]:
        return tuple(parse_destination(entry) for entry in self.egress_allow)

    def image(self, name: str) -> str:
        return f"qcstack/{name}:{self.image_tag}"
