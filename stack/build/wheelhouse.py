"""Fetches the wheels named in the lock files, checked against their sha256 pins."""

from __future__ import annotations

import sys
from pathlib import Path

from stack.build import stamp
from stack.process import run, step
from stack.settings import Settings

PLATFORMS = (
    "manylinux_2_36_x86_64",
    "manylinux_2_28_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
)


def wheelhouse_dir(settings: Settings, lock: Path) -> Path:
    return settings.build_dir / "wheelhouse" / lock.stem


def fetch_wheels(settings: Settings, lock: Path) -> Path:
    """Downloads every wheel of `lock` into its own folder; a no-op when the lock is unchanged."""
    target = wheelhouse_dir(settings, lock)
    if stamp.holds(target, lock):
        return target
    target.mkdir(parents=True, exist_ok=True)
    platform_args = [arg for p in PLATFORMS for arg in ("--platform", p)]
    with step(f"fetch wheels for {lock.name} into {target}"):
        run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--progress-bar",
                "off",
                "--require-hashes",
                "--no-deps",
                "--only-binary=:all:",
                "--python-version",
                "3.11",
                "--implementation",
                "cp",
                "--abi",
                "cp311",
                "--abi",
                "abi3",
                "--abi",
                "none",
                *platform_args,
                "--cert",
                str(settings.ca_bundle),
                "-d",
                str(target),
                "-r",
                str(lock),
            ],
        )
    stamp.mark(target, lock)
    return target
