"""Builds the small static Go tools under tools/ on the host, cached by a hash of their sources."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path

from stack.process import SYSTEM_PATH, CommandError, output, run, step
from stack.settings import Settings

# Where Go's own tarball installs it; tried after the system PATH.
GO_FALLBACK_DIR = "/usr/local/go/bin"
GO_BUILD_FLAGS = ("-trimpath", "-buildvcs=false", "-ldflags=-s -w")
GO_ENVIRONMENT = {
    "GOTOOLCHAIN": "local",  # never download another toolchain
    "GOPROXY": "off",  # the tools have no dependencies: nothing to fetch
    "GOFLAGS": "-mod=readonly",
    "GOENV": "off",
    "CGO_ENABLED": "0",  # static, so it runs in a FROM-scratch image
    "GOOS": "linux",
    "GOARCH": "amd64",
}


def tool_dir(settings: Settings, name: str) -> Path:
    return settings.repo_root / "tools" / name


def pinned_go_version(source: Path) -> tuple[int, int]:
    """The major.minor of the `go` directive in the tool's go.mod."""
    found = re.search(r"^go (\d+)\.(\d+)(?:\.\d+)?\s*$", (source / "go.mod").read_text(), re.M)
    if not found:
        raise CommandError(f"{source / 'go.mod'} has no `go 1.N` directive")
    return int(found[1]), int(found[2])


def source_digest(source: Path) -> str:
    """Hash of everything that goes into the binary: go.mod, go.sum, non-test .go files, flags."""
    digest = hashlib.sha256("\0".join(GO_BUILD_FLAGS).encode())
    for key, value in sorted(GO_ENVIRONMENT.items()):
        digest.update(f"\0{key}={value}".encode())
    files = [p for p in source.rglob("*") if p.is_file()]
    inputs = [
        p
        for p in files
        if p.name in ("go.mod", "go.sum") or (p.suffix == ".go" and not p.name.endswith("_test.go"))
    ]
    for path in sorted(inputs):
        digest.update(f"\0{path.relative_to(source)}\0".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def find_go(want: tuple[int, int]) -> str:
    go = shutil.which("go", path=f"{SYSTEM_PATH}:{GO_FALLBACK_DIR}")
    if go is None:
        raise CommandError(
            f"go is missing: the healthcheck tools need Go {want[0]}.{want[1]} "
            f"(install it to {GO_FALLBACK_DIR} or put it on the PATH)"
        )
    version = output([go, "env", "GOVERSION"], env={"PATH": SYSTEM_PATH, "GOTOOLCHAIN": "local"})
    found = re.match(r"go(\d+)\.(\d+)", version)
    if not found or (int(found[1]), int(found[2])) != want:
        raise CommandError(
            f"{go} is {version or 'of unknown version'}; the tools pin Go {want[0]}.{want[1]} "
            "in their go.mod: install that release"
        )
    return go


def go_environment(settings: Settings) -> dict[str, str]:
    """Go's environment for the tools: pinned target, no network, caches under the build dir."""
    cache = settings.build_dir / "go"
    return {
        **GO_ENVIRONMENT,
        "PATH": SYSTEM_PATH,
        "HOME": str(cache),
        "GOCACHE": str(cache / "cache"),
        "GOPATH": str(cache / "path"),
    }


def go_tools(settings: Settings) -> list[str]:
    """The names of the Go tools under tools/."""
    return sorted(p.parent.name for p in (settings.repo_root / "tools").glob("*/go.mod"))


def check_go_tool(settings: Settings, name: str) -> None:
    """Runs `go vet` and `go test` on tools/<name>; CommandError when either fails."""
    source = tool_dir(settings, name)
    go = find_go(pinned_go_version(source))
    for args in (["vet", "./..."], ["test", "-count=1", "./..."]):
        run([go, *args], cwd=source, env=go_environment(settings))


def build_go_tool(settings: Settings, name: str) -> Path:
    """Returns the static binary of tools/<name>, building it only when its sources changed."""
    source = tool_dir(settings, name)
    digest = source_digest(source)
    binary = settings.build_dir / "tools" / name / digest[:16] / name
    if binary.is_file():
        return binary
    go = find_go(pinned_go_version(source))
    partial = binary.with_name(f".{name}.partial")
    binary.parent.mkdir(parents=True, exist_ok=True)
    with step(f"go build tools/{name} into {binary}"):
        run(
            [go, "build", *GO_BUILD_FLAGS, "-o", partial, "."],
            cwd=source,
            env=go_environment(settings),
        )
    os.replace(partial, binary)
    for stale in binary.parent.parent.iterdir():
        if stale != binary.parent:
            shutil.rmtree(stale, ignore_errors=True)
    return binary
