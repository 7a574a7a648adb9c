"""Stages each image's build context from local inputs and builds it with Docker."""

from __future__ import annotations

import filecmp
import shutil
from dataclasses import dataclass
from pathlib import Path

from stack.build.base import ensure_base_image
from stack.build.debs import fetch_debs
from stack.build.gotools import build_go_tool
from stack.build.otelcol import BINARY as OTELCOL_BINARY
from stack.build.otelcol import build_otelcol
from stack.build.wheelhouse import fetch_wheels
from stack.process import DOCKER_BUILD_ENVIRONMENT, CommandError, run, step
from stack.settings import Settings


@dataclass(frozen=True)
class ImageRecipe:
    """One image of the stack: its folder under images/ and the local inputs its build stage
    installs from, each optional: a lock of Python wheels, a lock of Debian packages, static Go
    tools from tools/ built on the host, and folders of this repository's own code."""

    name: str
    python_lock: str | None = None
    """locks/<file> pinning wheels by sha256: staged as requirements.txt and wheels/ (with pip's
    own wheels from locks/build.txt to install them)."""
    deb_lock: str | None = None
    """locks/<file> pinning .deb files by sha256: staged as debs.lock and debs/."""
    go_tools: tuple[str, ...] = ()
    """tools/<name>, each staged as the static binary <name>."""
    sources: tuple[str, ...] = ()
    """Folders of this repository (Python packages such as gateway), each staged under src/ with
    its files as they are, bytecode caches left out: src/<folder>/..."""
    otelcol: bool = False
    """The collector binary built from otel/manifest.yaml (stack/build/otelcol.py), staged as
    otelcol-qcstack, with the collector configs otel/*.yaml beside it (the manifest left out)."""


IMAGES = (
    ImageRecipe(name="qc-mcp", python_lock="qc-mcp.txt"),
    ImageRecipe(name="egress-proxy", deb_lock="egress-proxy.debs", go_tools=("healthcheck",)),
    ImageRecipe(
        name="gateway",
        python_lock="gateway.txt",
        go_tools=("healthcheck",),
        sources=("gateway", "servicebase"),
    ),
    ImageRecipe(name="gateway-relay", go_tools=("relay", "healthcheck")),
    ImageRecipe(name="otel-collector", go_tools=("healthcheck",), otelcol=True),
    ImageRecipe(
        name="falco-responder",
        python_lock="responder.txt",
        go_tools=("healthcheck",),
        sources=("responder", "servicebase"),
    ),
)

OTELCOL_CONFIGS = ("collector.yaml", "export-otlphttp.yaml")
"""otel/ files the collector image holds under /etc/otelcol/."""

SOURCE_SKIPPED = ("__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache")
"""Folders under a staged source that hold caches, never code."""


def source_files(root: Path, folder: str) -> dict[str, Path]:
    """Every file of the repository folder `folder` by its path in the context, src/<folder>/...;
    bytecode, caches and hidden files stay behind."""
    source = root / folder
    if not source.is_dir():
        raise CommandError(f"{source} is not a folder of the repository")
    files: dict[str, Path] = {}
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(root)
        if (
            not path.is_file()
            or any(part in SOURCE_SKIPPED or part.startswith(".") for part in relative.parts)
            or path.suffix in (".pyc", ".pyo")
        ):
            continue
        files[f"src/{relative.as_posix()}"] = path
    return files


def sync_file(src: Path, dest: Path) -> None:
    """Copies src to dest only when it differs, so Docker's build cache keeps hitting."""
    if dest.exists() and filecmp.cmp(src, dest, shallow=False):
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dest)


def context_files(settings: Settings, recipe: ImageRecipe) -> dict[str, Path]:
    """Every file of the recipe's build context, by its path in the context; fetches and builds
    the inputs that are not there yet."""
    root = settings.repo_root
    common = root / "images" / "common"
    wanted: dict[str, Path] = {"assemble_rootfs.py": common / "assemble_rootfs.py"}
    for source in (root / "images" / recipe.name).iterdir():
        wanted[source.name] = source
    if recipe.python_lock:
        lock = root / "locks" / recipe.python_lock
        wanted["requirements.txt"] = lock
        wanted["install_python_root.sh"] = common / "install_python_root.sh"
        for wheelhouse in (
            fetch_wheels(settings, lock),
            fetch_wheels(settings, root / "locks" / "build.txt"),
        ):
            for wheel in wheelhouse.glob("*.whl"):
                wanted[f"wheels/{wheel.name}"] = wheel
    if recipe.deb_lock:
        lock = root / "locks" / recipe.deb_lock
        wanted["debs.lock"] = lock
        for deb in fetch_debs(settings, lock).glob("*.deb"):
            wanted[f"debs/{deb.name}"] = deb
    for tool in recipe.go_tools:
        wanted[tool] = build_go_tool(settings, tool)
    for folder in recipe.sources:
        wanted.update(source_files(root, folder))
    if recipe.otelcol:
        wanted[OTELCOL_BINARY] = build_otelcol(settings)
        for config in OTELCOL_CONFIGS:
            wanted[config] = root / "otel" / config
    return wanted


def stage_context(settings: Settings, recipe: ImageRecipe) -> Path:
    context = settings.build_dir / "context" / recipe.name
    wanted = context_files(settings, recipe)
    for existing in context.rglob("*") if context.exists() else []:
        if existing.is_file() and str(existing.relative_to(context)) not in wanted:
            existing.unlink()
    for relative, source in wanted.items():
        sync_file(source, context / relative)
    return context


def build_image(settings: Settings, recipe: ImageRecipe, base: str) -> str:
    tag = settings.image(recipe.name)
    context = stage_context(settings, recipe)
    with step(f"build {tag} from {context}"):
        run(
            [
                "docker",
                "build",
                # The classic builder otherwise leaves the container of a failed step behind.
                "--force-rm",
                "--build-arg",
                f"BASE_IMAGE={base}",
                "--label",
                "org.opencontainers.image.source=qcstack",
                "--label",
                f"qcstack.base={base}",
                "-t",
                tag,
                str(context),
            ],
            env=DOCKER_BUILD_ENVIRONMENT,
        )
    return tag


def build_all(settings: Settings) -> list[str]:
    """Builds every image of the stack; unchanged inputs make this a cache hit."""
    base = ensure_base_image(settings)
    return [build_image(settings, recipe, base) for recipe in IMAGES]
