"""Runs `docker compose` for one qcstack project with exactly the variables its file uses."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Network
from pathlib import Path

from stack.egress import render_policy
from stack.process import SYSTEM_PATH, CommandError, run
from stack.settings import Settings, env_file


@dataclass(frozen=True)
class ComposeProject:
    settings: Settings
    name: str
    secrets_dir: Path
    egress_subnet: IPv4Network
    gateway_port: int
    responder_port: int
    overrides: Sequence[Path] = field(default=())
    seccomp_dir: Path | None = None
    """Where the seccomp profiles are read from; None: the repository's seccomp/ folder."""

    @property
    def egress_policy(self) -> Path:
        """The proxy's allow-list for this project, rendered from settings on every `up`."""
        return self.settings.build_dir / "projects" / self.name / "egress-policy.conf"

    @property
    def gateway_env(self) -> Path:
        """The gateway's settings for this project, rendered from settings on every `up`."""
        return self.settings.build_dir / "projects" / self.name / "gateway.env"

    @property
    def responder_env(self) -> Path:
        """The responder's settings for this project, rendered from settings on every `up`."""
        return self.settings.build_dir / "projects" / self.name / "responder.env"

    def environment(self) -> dict[str, str]:
        return {
            "PATH": SYSTEM_PATH,
            "QCSTACK_IMAGE_TAG": self.settings.image_tag,
            "QCSTACK_SECRETS_DIR": str(self.secrets_dir),
            "QCSTACK_SECCOMP_DIR": str(self.seccomp_dir or self.settings.seccomp_dir),
            "QCSTACK_EGRESS_SUBNET": str(self.egress_subnet),
            "QCSTACK_EGRESS_POLICY": str(self.egress_policy),
            "QCSTACK_GATEWAY_ENV": str(self.gateway_env),
            "QCSTACK_GATEWAY_PORT": str(self.gateway_port),
            "QCSTACK_RESPONDER_ENV": str(self.responder_env),
            "QCSTACK_RESPONDER_PORT": str(self.responder_port),
        }

    def write_rendered_files(self) -> None:
        """The files compose reads that settings decide; none holds a secret."""
        rendered = {
            self.egress_policy: render_policy(
                self.settings.egress_destinations, self.egress_subnet
            ),
            self.gateway_env: env_file(self.settings.gateway_environment()),
            self.responder_env: env_file(self.settings.responder_environment()),
        }
        for path, text in rendered.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            path.chmod(0o444)  # the proxy reads its policy as its own uid

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
        if self.settings.otel_export_endpoint:
            # OBS-04: the collector sits on the internal telemetry network alone. An export would
            # need a route out that qc-mcp cannot share (the egress proxy's allow-list is
            # per subnet, so listing the backend there would open it to qc-mcp too).
            raise CommandError(
                f"otel_export_endpoint is set ({self.settings.otel_export_endpoint}), but this "
                "stack gives the collector no route out (OBS-04): unset "
                "QCSTACK_OTEL_EXPORT_ENDPOINT, or see the README's 'Tracing' section for what "
                "exporting needs"
            )
        self.write_rendered_files()
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

    def down(self, *, remove_volumes: bool) -> None:
        """Removes the project's containers and networks, leftovers included; its volumes (the
        gateway's audit log, approvals, lockdown flag) only when asked."""
        self.write_rendered_files()  # compose reads every file it names, even to stop
        volumes = ("--volumes",) if remove_volumes else ()
        self.run("down", *volumes, "--remove-orphans", "--timeout", "5")

    def logs(self) -> str:
        return self.run("logs", "--no-color", "--tail", "200", capture=True, check=False)
