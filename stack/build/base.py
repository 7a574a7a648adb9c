"""Makes the build-stage base image from Debian packages with debootstrap, cached by its inputs.

IMG-01: the base is made here from a Debian suite by name and imported, never pulled.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from stack.process import CommandError, run, step
from stack.settings import Settings

VARIANT = "minbase"
# python3 runs the installer and the rootfs assembly; ca-certificates is nothing the final
# images keep unless they ask for it.
PACKAGES = ("python3", "ca-certificates")


def base_tag(settings: Settings) -> str:
    recipe = "\n".join([settings.debian_suite, settings.debian_mirror, VARIANT, *PACKAGES])
    digest = hashlib.sha256(recipe.encode()).hexdigest()[:12]
    return f"qcstack/base:{settings.debian_suite}-{digest}"


def image_exists(tag: str) -> bool:
    return run(["docker", "image", "inspect", tag], capture=True, check=False).returncode == 0


def ensure_base_image(settings: Settings) -> str:
    """Returns the base image to build from, making it with debootstrap when it is missing."""
    if settings.base_image:
        return settings.base_image
    tag = base_tag(settings)
    if image_exists(tag):
        return tag
    if os.geteuid() != 0:
        raise CommandError(
            "building the base rootfs needs root (debootstrap); run as root, or set "
            "QCSTACK_BASE_IMAGE to a base image that has python3.11 and /bin/sh"
        )
    rootfs = debootstrap(settings, tag.split(":")[1], VARIANT, PACKAGES)
    import_rootfs(rootfs, tag)
    shutil.rmtree(rootfs)
    return tag


def debootstrap(settings: Settings, name: str, variant: str, packages: tuple[str, ...]) -> Path:
    """A fresh Debian root filesystem under the build folder, without apt's caches."""
    if shutil.which("debootstrap") is None:
        raise CommandError(
            "debootstrap is missing: run scripts/install-docker or apt-get install debootstrap"
        )
    rootfs = settings.build_dir / "rootfs" / name
    shutil.rmtree(rootfs, ignore_errors=True)
    rootfs.parent.mkdir(parents=True, exist_ok=True)
    with step(
        f"debootstrap {settings.debian_suite} ({variant} + {', '.join(packages)}) into {rootfs}"
    ):
        run(
            [
                "debootstrap",
                f"--variant={variant}",
                f"--include={','.join(packages)}",
                settings.debian_suite,
                rootfs,
                settings.debian_mirror,
            ]
        )
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for entry in (rootfs / cache).glob("*"):
                if entry.is_file():
                    entry.unlink()
    return rootfs


def import_rootfs(rootfs: Path, tag: str, changes: tuple[str, ...] = ()) -> None:
    """`docker import` of a root filesystem as `tag`, with Dockerfile `changes` (CMD ...)."""
    with step(f"import {rootfs} as {tag}"):
        tar = subprocess.Popen(
            ["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE
        )
        options = [arg for change in changes for arg in ("--change", change)]
        imported = subprocess.run(
            ["docker", "import", *options, "-", tag],
            stdin=tar.stdout,
            capture_output=True,
            text=True,
        )
        tar.wait()
        if tar.returncode or imported.returncode:
            raise CommandError(f"docker import of {rootfs} failed: {imported.stderr.strip()}")
