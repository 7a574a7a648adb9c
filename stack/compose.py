"""Runs `docker compose` for one qcstack project with exactly the variables its file uses."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from stack.process import SYSTEM_PATH, run
from stack.settings import Settings


@dataclass(frozen=True)
class ComposeProject:
    settings: Settings
    name: str
    secrets_dir: Path
    overrides: Sequence[Path] = field(default=())
    seccomp_dir: Path | None = None
    """Where qc-mcp.json is read from; None: the repository's seccomp/ folder."""

    def environment(self) -> dict[str, str]:
        return {
            "PATH": SYSTEM_PATH,
            "QCSTACK_IMAGE_TAG": self.settings.image_tag,
            "QCSTACK_SECRETS_DIR": str(self.secrets_dir),
            "QCSTACK_SECCOMP_DIR": str(self.seccomp_dir or self.settings.seccomp_dir),
        }

    def command(self, *args: str) -> list[str]:
        files = [self.settings.compose_file, *self.overrides]
        return [
            "docker",
            "compose",
            "-p",
            self.name,
            *[arg for f in files for arg in ("-f", str(f))],
            *args,
        ]

    def run(
        self, *args: str, capture: bool = False, check: bool = True, timeout: float | None = None
    ) -> str:
        result = run(
            self.command(*args),
            env=self.environment(),
            capture=capture,
            check=check,
            timeout=timeout,
        )
        return result.stdout or ""

    def up(self, *, wait_timeout: int | None = None) -> None:
        limit = ("--wait-timeout", str(wait_timeout)) if wait_timeout else ()
        self.run(
            "up",
            "--detach",
            "--wait",
            *limit,
            "--remove-orphans",
            "--quiet-pull",
            timeout=None if wait_timeout is None else wait_timeout + 60,
        )

    def down(self) -> None:
        """Removes the project's containers, networks and volumes, leftovers included."""
        self.run("down", "--volumes", "--remove-orphans", "--timeout", "5")

    def logs(self) -> str:
        return self.run("logs", "--no-color", "--tail", "200", capture=True, check=False)
