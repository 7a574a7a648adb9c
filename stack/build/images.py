"""Stages each image's build context from local inputs and builds it with Docker."""

from __future__ import annotations

import filecmp
import shutil
from dataclasses import dataclass
from pathlib import Path

from stack.build.base import ensure_base_image
from stack.build.wheelhouse import fetch_wheels
from stack.process import DOCKER_BUILD_ENVIRONMENT, run, step
from stack.settings import Settings


@dataclass(frozen=True)
class ImageRecipe:
    """One image of the stack: its folder under images/ and the lock of its Python packages."""

    name: str
    lock: str


IMAGES = (ImageRecipe(name="qc-mcp", lock="qc-mcp.txt"),)


def sync_file(src: Path, dest: Path) -> None:
    """Copies src to dest only when it differs, so Docker's build cache keeps hitting."""
    if dest.exists() and filecmp.cmp(src, dest, shallow=False):
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dest)


def stage_context(settings: Settings, recipe: ImageRecipe) -> Path:
    root = settings.repo_root
    context = settings.build_dir / "context" / recipe.name
    lock = root / "locks" / recipe.lock
    wanted: dict[str, Path] = {
        "requirements.txt": lock,
        "assemble_rootfs.py": root / "images" / "common" / "assemble_rootfs.py",
    }
    for source in (root / "images" / recipe.name).iterdir():
        wanted[source.name] = source
    for wheelhouse in (
        fetch_wheels(settings, lock),
        fetch_wheels(settings, root / "locks" / "build.txt"),
    ):
        for wheel in wheelhouse.glob("*.whl"):
            wanted[f"wheels/{wheel.name}"] = wheel
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
