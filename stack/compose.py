"""Runs `docker compose` for one qcstack project with exactly the variables its file uses."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Network
from pathlib import Path

from stack.egress import render_policy
from stack.process import SYSTEM_PATH, run
from stack.settings import Settings


@dataclass(frozen=True)
class ComposeProject:
    settings: Settings
    name: str
    secrets_dir: Path
    egress_subnet: IPv4Network
    overrides: Sequence[Path] = field(default=())
    seccomp_dir: Path | None = None
    """Where the seccomp profiles are read from; None: the repository's seccomp/ folder."""

    @property
    def egress_policy(self) -> Path:
        """The proxy's allow-list for this project, rendered from settings on every `up`."""
        return self.settings.build_dir / "projects" / self.name / "egress-policy.conf"

    def environment(self) -> dict[str, str]:
        return {
            "PATH": SYSTEM_PATH,
            "QCSTACK_IMAGE_TAG": self.settings.image_tag,
            "QCSTACK_SECRETS_DIR": str(self.secrets_dir),
            "QCSTACK_SECCOMP_DIR": str(self.seccomp_dir or self.settings.seccomp_dir),
            "QCSTACK_EGRESS_SUBNET": str(self.egress_subnet),
            "QCSTACK_EGRESS_POLICY": str(self.egress_policy),
        }

    def write_egress_policy(self) -> None:
        text = render_policy(self.settings.egress_destinations, self.egress_subnet)
        self.egress_policy.parent.mkdir(parents=True, exist_ok=True)
        self.egress_policy.write_text(text, encoding="utf-8")
        self.egress_policy.chmod(0o444)  # read by the proxy's uid; it holds no secret

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
        self.write_egress_policy()
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
        if not self.egress_policy.exists():
            self.write_egress_policy()  # compose reads every file it names, even to stop
        self.run("down", "--volumes", "--remove-orphans", "--timeout", "5")

    def logs(self) -> str:
        return self.run("logs", "--no-color", "--tail", "200", capture=True, check=False)
