"""What one deploy ships, worked out on the controller from settings before pyinfra connects.

The plan names files by path, never by content: secrets stay in their files on the controller
until pyinfra uploads them, so no secret is ever in an operation's arguments or its output.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from stack.build.images import IMAGES
from stack.deploy import files
from stack.deploy.falco import FalcoPlan, make_falco_plan
from stack.egress import render_policy
from stack.process import CommandError, output, run, step
from stack.secrets import STACK_SECRETS, owner
from stack.settings import Settings, env_file

TEST_SECRET_NAMES = ("qc_test_ca", "qc_api_double_cert", "qc_api_double_key")
"""The API double's certificate and key and the test CA qc-mcp trusts: test deploys only."""


@dataclass(frozen=True)
class Secret:
    """One secret file: read from the controller, written 0400 for `uid` on the VM."""

    name: str
    source: Path
    uid: int

    @property
    def dest(self) -> str:
        return f"{files.SECRETS_DIR}/{self.name}"


@dataclass(frozen=True)
class Image:
    tag: str
    id: str


@dataclass(frozen=True)
class DeployPlan:
    """Everything one deploy puts on the VM."""

    project: str
    test_stack: bool
    images: tuple[Image, ...]
    rendered: dict[str, tuple[str, int]]
    """Remote path -> (text, mode) of files rendered from settings; none holds a secret."""
    copied: dict[str, Path]
    """Remote path -> local file of the repository (compose files, seccomp profiles)."""
    secrets: tuple[Secret, ...]
    mirror: str
    archive_dir: Path
    falco: FalcoPlan
    """HOST-07: Falco on the VM, from its repository, from a package file, or off."""
    """Where `docker save` archives of the images to ship are kept on the controller."""


def image_ids(tags: tuple[str, ...]) -> tuple[Image, ...]:
    """The controller's image ID of each tag; refuses when one is not built."""
    found = []
    for tag in tags:
        result = run(
            ["docker", "image", "inspect", "-f", "{{.Id}}", tag], capture=True, check=False
        )
        if result.returncode != 0:
            raise CommandError(f"{tag} is not built on the controller: run `bin/qcstack build`")
        found.append(Image(tag, result.stdout.strip()))
    return tuple(found)


def plan_secrets(secrets_dir: Path, test_stack: bool) -> tuple[Secret, ...]:
    """Every secret the stack reads, from the controller's folder; refuses when one is missing
    or empty, naming the file (never its content)."""
    names = (*STACK_SECRETS, *(TEST_SECRET_NAMES if test_stack else ()))
    secrets = []
    missing = []
    for name in names:
        path = secrets_dir / name
        try:
            empty = path.stat().st_size == 0
        except OSError:
            missing.append(f"{path} is missing")
            continue
        if empty:
            missing.append(f"{path} is empty")
        secrets.append(Secret(name, path, owner(name)))
    if missing:
        raise CommandError(
            "cannot deploy without every secret: " + "; ".join(missing) + ". `bin/qcstack up` "
            "asks for the credentials and makes the rest"
        )
    return tuple(secrets)


def make_plan(
    settings: Settings,
    *,
    project: str,
    secrets_dir: Path,
    test_stack: bool,
    gateway_port: int,
    falco_off_because: str = "",
) -> DeployPlan:
    """The deploy of one compose project. With `falco_off_because`, Falco is left off whatever
    settings.falco says, and the plan says why."""
    root = settings.repo_root
    tags = tuple(settings.image(recipe.name) for recipe in IMAGES)
    copied = {
        f"{files.COMPOSE_DIR}/{name}": root / "compose" / name
        for name in files.compose_files(test_stack)
    }
    for recipe in IMAGES:
        profile = settings.seccomp_dir / f"{recipe.name}.json"
        if not profile.exists():
            raise CommandError(f"{profile} is missing: every service needs its seccomp profile")
        copied[f"{files.SECCOMP_DIR}/{profile.name}"] = profile
    if test_stack:
        double = root / "infra_tests" / "doubles" / "qc_api.py"
        copied[f"{files.DOUBLES_DIR}/{double.name}"] = double
    # The responder takes Falco's alerts on the VM's loopback: the test stack's port or the
    # operator's, as for the gateway.
    responder_port = settings.test_responder_port if test_stack else settings.responder_port
    rendered = {
        files.COMPOSE_ENV: (
            files.compose_env(
                image_tag=settings.image_tag,
                egress_subnet=str(settings.egress_subnet),
                gateway_port=gateway_port,
                responder_port=responder_port,
            ),
            0o644,
        ),
        files.EGRESS_POLICY: (
            render_policy(settings.egress_destinations, settings.egress_subnet),
            0o444,
        ),
        files.GATEWAY_ENV: (env_file(settings.gateway_environment()), 0o644),
        files.RESPONDER_ENV: (env_file(settings.responder_environment()), 0o644),
        files.DAEMON_JSON: (files.daemon_json(), 0o644),
        files.SSHD_DROP_IN: (files.sshd_drop_in(), 0o644),
        files.FIREWALL_RULES: (files.firewall_rules(), 0o644),
        f"/etc/systemd/system/{files.FIREWALL_UNIT}": (files.firewall_unit(), 0o644),
        f"/etc/systemd/system/{files.STACK_UNIT}": (files.stack_unit(project, test_stack), 0o644),
        files.AUTO_UPGRADES: (files.auto_upgrades(), 0o644),
        files.UNATTENDED_UPGRADES: (files.unattended_upgrades(), 0o644),
    }
    return DeployPlan(
        project=project,
        test_stack=test_stack,
        images=image_ids(tags),
        rendered=rendered,
        copied=copied,
        secrets=plan_secrets(secrets_dir, test_stack),
        mirror=settings.debian_mirror,
        archive_dir=settings.build_dir / "deploy",
        falco=make_falco_plan(
            settings.falco,
            root,
            responder_port,
            settings.falco_package,
            settings.falco_package_sha256,
            falco_off_because,
        ),
    )


def save_images(archive_dir: Path, images: tuple[Image, ...]) -> Path:
    """`docker save` of exactly these images into one archive, made once per set of tags and IDs
    (the deploy ships only the images whose ID on the VM differs)."""
    # By tag and ID: `docker save` records the tags, so the same IDs under another image tag
    # (QCSTACK_IMAGE_TAG) need their own archive.
    digest = hashlib.sha256(" ".join(f"{i.tag}={i.id}" for i in images).encode()).hexdigest()[:16]
    archive = archive_dir / f"images-{digest}.tar"
    if archive.exists():
        return archive
    archive_dir.mkdir(parents=True, exist_ok=True)
    for stale in archive_dir.glob("images-*.tar"):
        stale.unlink()
    partial = archive.with_suffix(".partial")
    with step(f"docker save {', '.join(i.tag for i in images)} into {archive}"):
        run(["docker", "save", "-o", partial, *(image.tag for image in images)])
    # The archive must hold the IDs the plan names: a tag moved while saving is caught here.
    for image in images:
        now = output(["docker", "image", "inspect", "-f", "{{.Id}}", image.tag])
        if now != image.id:
            partial.unlink()
            raise CommandError(f"{image.tag} changed while it was saved; deploy again")
    partial.rename(archive)
    return archive
