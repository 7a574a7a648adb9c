"""The test stacks: canary credentials, the API double's certificates, and pytest's command."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from ipaddress import IPv4Network
from pathlib import Path

from pydantic import ValidationError

from stack.compose import ComposeProject
from stack.process import CommandError
from stack.secrets import write_secret
from stack.settings import Settings
from stack.testca import make_test_certificates
from stack.testdata import (
    CANARY_API_TOKEN,
    CANARY_USER_ID,
    TEST_ADMIN_NAME,
    TEST_ADMIN_PASSWORD,
    TEST_BROKERAGES,
    TEST_GATEWAY_TOKEN,
    TEST_RESPONDER_TOKEN,
)


def test_secrets_dir(settings: Settings) -> Path:
    return settings.build_dir / "test-secrets"


def prepare_test_secrets(settings: Settings, directory: Path | None = None) -> Path:
    """Writes the canary credentials and a fresh test CA (into `directory`, by default the test
    stacks' folder); returns their folder."""
    directory = directory or test_secrets_dir(settings)
    write_secret(directory, "qc_user_id", CANARY_USER_ID)
    write_secret(directory, "qc_api_token", CANARY_API_TOKEN)
    write_secret(directory, "gateway_token", TEST_GATEWAY_TOKEN)
    write_secret(directory, "gateway_admins", f"{TEST_ADMIN_NAME}:{TEST_ADMIN_PASSWORD}")
    write_secret(directory, "gateway_responder_token", TEST_RESPONDER_TOKEN)
    write_secret(directory, "responder_token", TEST_RESPONDER_TOKEN)
    write_secret(directory, "gateway_brokerages", json.dumps(TEST_BROKERAGES))
    make_test_certificates(directory)
    return directory


def test_project(
    settings: Settings,
    name: str | None = None,
    overrides: Sequence[Path] = (),
    *,
    egress_subnet: IPv4Network | None = None,
    gateway_port: int | None = None,
    responder_port: int | None = None,
    secrets_dir: Path | None = None,
    seccomp_dir: Path | None = None,
) -> ComposeProject:
    """A test stack: compose.yaml plus the API double (compose/test.yaml), canary secrets.

    egress_subnet: the egress network's subnet, settings.test_egress_subnet unless given; a
    stack that runs beside the test stack needs one of its own (compose refuses overlaps).
    gateway_port: the gateway's loopback port, settings.test_gateway_port unless given (the
    same: a stack beside the test stack needs its own). responder_port: the responder's,
    settings.test_responder_port unless given (the same again).
    secrets_dir: where the canary secrets and test certificates are (prepare_test_secrets'
    folder unless given). seccomp_dir: where the services' profiles are read from.
    """
    return ComposeProject(
        settings,
        name or settings.test_project_name,
        secrets_dir or test_secrets_dir(settings),
        egress_subnet or settings.test_egress_subnet,
        gateway_port or settings.test_gateway_port,
        responder_port or settings.test_responder_port,
        overrides=(settings.repo_root / "compose" / "test.yaml", *overrides),
        seccomp_dir=seccomp_dir,
    )


def mutant_project_name(settings: Settings) -> str:
    return f"{settings.test_project_name}-mutant"


def lane_settings(settings: Settings, lane: int) -> Settings:
    """The settings of a test stack that runs beside the test stack: lane 0 is the test stacks'
    own; lane k takes the k-th /28 after test_egress_subnet, ports 100*k above the test ports
    and a project name of its own (the mutation check runs its mutants in lanes)."""
    if lane == 0:
        return settings
    subnet = settings.test_egress_subnet
    first = int(subnet.network_address) + lane * subnet.num_addresses
    try:
        return Settings.model_validate(
            {
                **settings.model_dump(),
                "test_project_name": f"{settings.test_project_name}-lane{lane}",
                "test_egress_subnet": IPv4Network((first, subnet.prefixlen)),
                "test_gateway_port": settings.test_gateway_port + 100 * lane,
                "test_responder_port": settings.test_responder_port + 100 * lane,
            }
        )
    except ValidationError as error:
        raise CommandError(
            f"mutation lane {lane} has no room beside the test stack ({error}); pick another "
            "test_egress_subnet or test ports, or fewer mutation_lanes"
        ) from None


def remove_test_stacks(settings: Settings) -> None:
    """Downs the test stack and the mutation check's lane 0, which share the test egress subnet
    and ports: a leftover of either (an interrupted run) would keep the other from starting. The
    other lanes' stacks share nothing with them, and each mutant downs its own lane's leftovers
    before it starts."""
    for name in (settings.test_project_name, mutant_project_name(settings)):
        test_project(settings, name).down(remove_volumes=True)


def pytest_command(settings: Settings, project: str, *extra: str) -> list[str]:
    """pytest for the infra suites, aimed at `project` on the configured Docker host."""
    return [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        f"--project={project}",
        f"--hosts={settings.test_hosts}",
        *extra,
    ]
