"""Image builds: the base comes from Debian by default, a pulled one only when settings say so."""

from __future__ import annotations

import hashlib
from pathlib import Path

from stack.build.base import base_tag, ensure_base_image
from stack.build.wheelhouse import fetch_wheels
from stack.settings import Settings


def test_pulled_base_image_is_used_as_configured_without_building() -> None:
    settings = Settings(_env_file=None, base_image="registry.example/python:3.11")  # type: ignore[call-arg]
    assert ensure_base_image(settings) == "registry.example/python:3.11"


def test_base_tag_changes_with_its_recipe() -> None:
    bookworm = base_tag(Settings(_env_file=None))  # type: ignore[call-arg]
    trixie = base_tag(Settings(_env_file=None, debian_suite="trixie"))  # type: ignore[call-arg]
    assert bookworm.startswith("qcstack/base:bookworm-") and trixie.startswith(
        "qcstack/base:trixie-"
    )
    assert bookworm.split("-")[-1] != trixie.split("-")[-1]


def test_unchanged_lock_is_not_fetched_again(tmp_path: Path) -> None:
    lock = tmp_path / "empty.txt"
    lock.write_text("# nothing pinned\n")
    settings = Settings(_env_file=None, build_dir=tmp_path / "build")  # type: ignore[call-arg]
    target = tmp_path / "build" / "wheelhouse" / "empty"
    target.mkdir(parents=True)
    (target / ".lock-sha256").write_text(hashlib.sha256(lock.read_bytes()).hexdigest())
    # A matching stamp means no pip run at all: this would fail offline otherwise.
    assert fetch_wheels(settings, lock) == target
