"""Runs the test suites against a compose project: the canary test stack and pytest's command."""

from __future__ import annotations

import sys

from stack.compose import ComposeProject
from stack.secrets import write_secret
from stack.settings import Settings
from stack.testdata import CANARY_API_TOKEN, CANARY_USER_ID


def prepare_test_secrets(settings: Settings) -> ComposeProject:
    """The test project, with the canary credentials written as its secrets."""
    directory = settings.build_dir / "test-secrets"
    write_secret(directory, "qc_user_id", CANARY_USER_ID)
    write_secret(directory, "qc_api_token", CANARY_API_TOKEN)
    return ComposeProject(settings, settings.test_project_name, directory)


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
