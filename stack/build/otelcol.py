"""Builds the OpenTelemetry Collector with ocb from otel/manifest.yaml, cached by its inputs."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from stack.build.gotools import GO_ENVIRONMENT, find_go
from stack.process import SYSTEM_PATH, CommandError, output, run, step
from stack.settings import Settings

OCB_MODULE = "go.opentelemetry.io/collector/cmd/builder"
BINARY = "otelcol-qcstack"
GO_VERSION = (1, 26)
"""The Go release the collector is built with (major, minor); its modules need at least 1.26."""

CORE = "go.opentelemetry.io/collector"
CONTRIB = "github.com/open-telemetry/opentelemetry-collector-contrib"
ALLOWED_COMPONENTS: dict[str, frozenset[str]] = {
    "receivers": frozenset({f"{CORE}/receiver/otlpreceiver"}),
    "processors": frozenset(
        {
            f"{CORE}/processor/memorylimiterprocessor",
            f"{CONTRIB}/processor/redactionprocessor",
            f"{CORE}/processor/batchprocessor",
        }
    ),
    "exporters": frozenset(
        {f"{CONTRIB}/exporter/fileexporter", f"{CORE}/exporter/otlphttpexporter"}
    ),
    "extensions": frozenset({f"{CONTRIB}/extension/healthcheckextension"}),
    "providers": frozenset(
        {f"{CORE}/confmap/provider/fileprovider", f"{CORE}/confmap/provider/envprovider"}
    ),
    "connectors": frozenset(),
    "converters": frozenset(),
}
"""Every Go module the distribution may hold, by manifest section: nothing the stack does not use
(no other receiver to listen with, no exporter to send elsewhere, no http(s) config provider)."""

TELEMETRY = f"{CORE}/service"
DIST_KEYS = frozenset({"module", "name", "description", "version"})
"""The `dist` keys the manifest may set; the output path and Go binary are the build's own."""
MANIFEST_KEYS = frozenset({"dist", "telemetry", *ALLOWED_COMPONENTS})
_PIN = re.compile(r"^(?P<module>[a-z0-9.\-_/]+) (?P<version>v\d+\.\d+\.\d+)$")

OCB_FLAGS = ("--ldflags=-s -w", "--gcflags=")
"""ocb compiles with `go build -trimpath`; these keep its defaults explicit in the cache key."""
COMPILE_ENVIRONMENT = {
    **GO_ENVIRONMENT,
    "GOPROXY": "off",  # every module was fetched and checked against otel/go.sum before
    "GOFLAGS": "-mod=readonly -buildvcs=false",
}
NICE = ("nice", "-n", "10")
"""The cold build takes minutes of both CPUs: let anything else on the machine go first."""


@dataclass(frozen=True)
class Component:
    """One Go module of the manifest: the section it is in, its path and pinned version."""

    kind: str
    module: str
    version: str


def otel_dir(settings: Settings) -> Path:
    return settings.repo_root / "otel"


def load_manifest(path: Path) -> dict[str, Any]:
    """The manifest as YAML, refused unless it holds only the sections qcstack expects."""
    try:
        manifest = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise CommandError(f"cannot read the collector manifest {path}: {error}") from error
    if not isinstance(manifest, dict):
        raise CommandError(f"{path} is not a YAML mapping")
    unknown = set(manifest) - MANIFEST_KEYS
    if unknown:
        raise CommandError(f"{path}: unexpected sections {sorted(unknown)}")
    dist = manifest.get("dist")
    if not isinstance(dist, dict) or set(dist) - DIST_KEYS or not dist.get("name"):
        raise CommandError(
            f"{path}: `dist` must name the binary and may set only {sorted(DIST_KEYS)} "
            "(the build sets the output path and the Go binary)"
        )
    return manifest


def parse_pin(where: str, entry: object) -> tuple[str, str]:
    """`gomod: <module> v<x.y.z>` of one entry, refused when anything else is set."""
    if not isinstance(entry, dict) or set(entry) - {"gomod", "import"}:
        raise CommandError(f"{where}: each entry has `gomod` (and `import`) only, not {entry!r}")
    found = _PIN.match(str(entry.get("gomod", "")))
    if not found:
        raise CommandError(f"{where}: {entry.get('gomod')!r} is not `<module> vX.Y.Z`")
    return found["module"], found["version"]


def components(manifest: dict[str, Any]) -> list[Component]:
    """The manifest's components, refused when one is outside ALLOWED_COMPONENTS."""
    found: list[Component] = []
    for kind, allowed in ALLOWED_COMPONENTS.items():
        for entry in manifest.get(kind) or []:
            module, version = parse_pin(kind, entry)
            if module not in allowed:
                raise CommandError(
                    f"the collector manifest lists {module} under {kind}; qcstack's collector "
                    f"holds only {sorted(m for ms in ALLOWED_COMPONENTS.values() for m in ms)}"
                )
            found.append(Component(kind, module, version))
    return found


def core_version(manifest: dict[str, Any]) -> str:
    """The collector release: the version of the telemetry module (go.opentelemetry.io/collector/
    service), which ocb and every v0 component must share."""
    module, version = parse_pin("telemetry", manifest.get("telemetry"))
    if module != TELEMETRY:
        raise CommandError(f"telemetry must be {TELEMETRY}, not {module}")
    return version


def go_version(go: str) -> str:
    """The exact Go release, e.g. go1.26.8: a new patch release builds the binary again."""
    return output([go, "env", "GOVERSION"], env={"PATH": SYSTEM_PATH, "GOTOOLCHAIN": "local"})


def build_digest(settings: Settings, goversion: str) -> str:
    """Hash of every input of the binary: the manifest, the module hashes in otel/go.sum and
    otel/ocb.sum (ocb's own), the Go release, the build flags and environment."""
    source = otel_dir(settings)
    digest = hashlib.sha256(f"{goversion}\0{OCB_MODULE}\0".encode())
    for item in (*OCB_FLAGS, *(f"{k}={v}" for k, v in sorted(COMPILE_ENVIRONMENT.items()))):
        digest.update(f"{item}\0".encode())
    for name in ("manifest.yaml", "go.sum", "ocb.sum"):
        digest.update(f"\0{name}\0".encode())
        digest.update((source / name).read_bytes())
    return digest.hexdigest()


def fetch_environment(settings: Settings, cache: Path) -> dict[str, str]:
    """Go's environment while ocb resolves and downloads modules: the one step with network.
    Checksums are checked against otel/go.sum and Go's checksum database."""
    env = {
        **GO_ENVIRONMENT,
        "PATH": SYSTEM_PATH,
        "HOME": str(cache),
        "GOCACHE": str(cache / "cache"),
        "GOPATH": str(cache / "path"),
        "GOFLAGS": "-mod=mod -buildvcs=false",
        "SSL_CERT_FILE": str(settings.ca_bundle),
    }
    del env["GOPROXY"]  # Go's own default, unless the settings name a proxy
    if settings.go_proxy:
        env["GOPROXY"] = settings.go_proxy
    return env


def ocb_modules(go: str, ocb: Path) -> str:
    """ocb's own module and dependencies with their hashes, as `go version -m` reads them from
    the binary: `<module> <version> h1:<hash>` a line."""
    text = output([go, "version", "-m", ocb], env={"PATH": SYSTEM_PATH, "GOTOOLCHAIN": "local"})
    lines = [line.split() for line in text.splitlines()]
    return "".join(f"{' '.join(f[1:4])}\n" for f in lines if f[:1] in (["mod"], ["dep"]))


def ensure_ocb(
    settings: Settings, go: str, version: str, env: dict[str, str], *, update_lock: bool = False
) -> Path:
    """ocb at exactly the collector's release, installed once under the build dir and checked
    against otel/ocb.sum (its module and every dependency by hash) each time it is used."""
    gobin = settings.build_dir / "otelcol" / "ocb" / version
    ocb = gobin / "builder"
    if not ocb.is_file():
        with step(f"go install {OCB_MODULE}@{version}"):
            run(
                [*NICE, go, "install", f"{OCB_MODULE}@{version}"],
                env={**env, "GOBIN": str(gobin)},
            )
    lock = otel_dir(settings) / "ocb.sum"
    modules = ocb_modules(go, ocb)
    if update_lock:
        lock.write_text(modules)
    elif not lock.is_file() or lock.read_text() != modules:
        ocb.unlink()
        raise CommandError(
            f"{OCB_MODULE}@{version} does not match {lock} (missing, or another version or "
            "build of ocb): run `scripts/lock-otel`, review the diff and commit it"
        )
    return ocb


def parse_components(text: str) -> dict[str, set[str]]:
    """A collector's `components` listing (YAML) as `module version` by manifest section."""
    try:
        listing = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise CommandError(f"the collector's `components` listing is no YAML: {error}") from error
    if not isinstance(listing, dict):
        raise CommandError("the collector's `components` listing is no YAML mapping")
    return {
        kind: {str(item.get("module", "")) for item in listing.get(kind) or []}
        for kind in ALLOWED_COMPONENTS
    }


def manifest_listing(manifest: dict[str, Any]) -> dict[str, set[str]]:
    """What `components` must list for this manifest: `module version` by section."""
    want: dict[str, set[str]] = {kind: set() for kind in ALLOWED_COMPONENTS}
    for c in components(manifest):
        want[c.kind].add(f"{c.module} {c.version}")
    return want


def listed_components(binary: Path) -> dict[str, set[str]]:
    """What the built binary says it holds (`components`)."""
    return parse_components(output([binary, "components"], env={"PATH": SYSTEM_PATH}))


def check_components(binary: Path, manifest: dict[str, Any]) -> None:
    """Fails unless the binary holds exactly the manifest's components, at their versions."""
    want = manifest_listing(manifest)
    got = listed_components(binary)
    if got != want:
        diff = {k: sorted(got[k] ^ want[k]) for k in want if got[k] != want[k]}
        raise CommandError(f"{binary} holds other components than otel/manifest.yaml: {diff}")


def generate(
    settings: Settings, manifest: dict[str, Any], go: str, sources: Path, *, update_lock: bool
) -> None:
    """ocb's first two steps: generate the distribution's Go sources into `sources` and resolve
    and download their modules, starting from otel/go.sum; the resulting go.sum must equal it
    (unless update_lock, which writes it back for review)."""
    lock = otel_dir(settings) / "go.sum"
    cache = settings.build_dir / "go"
    env = fetch_environment(settings, cache)
    ocb = ensure_ocb(settings, go, core_version(manifest), env, update_lock=update_lock)
    shutil.rmtree(sources, ignore_errors=True)
    sources.mkdir(parents=True)
    if lock.is_file() and not update_lock:
        shutil.copyfile(lock, sources / "go.sum")
    config = sources.parent / f"{sources.name}.manifest.yaml"
    dist = {**manifest["dist"], "output_path": str(sources), "go": go}
    config.write_text(yaml.safe_dump({**manifest, "dist": dist}, sort_keys=False))
    with step(f"ocb: generate {BINARY} and fetch its modules into {cache}"):
        run(
            [
                *NICE,
                ocb,
                f"--config={config}",
                "--skip-compilation",
                "--skip-strict-versioning=false",
            ],
            env=env,
            cwd=sources,
        )
    resolved = (sources / "go.sum").read_bytes()
    if update_lock:
        lock.write_bytes(resolved)
        print(f"wrote {lock}: review the diff and commit it", file=sys.stderr)
    elif not lock.is_file() or lock.read_bytes() != resolved:
        raise CommandError(
            f"{lock} does not pin the modules otel/manifest.yaml resolves to (missing, or the "
            "manifest changed): run `scripts/lock-otel`, review the diff and commit it"
        )


def compile_binary(
    settings: Settings, manifest: dict[str, Any], go: str, sources: Path, target: Path
) -> None:
    """ocb's last step, with the network off: every module is already in the module cache."""
    cache = settings.build_dir / "go"
    env = {
        **COMPILE_ENVIRONMENT,
        "PATH": SYSTEM_PATH,
        "HOME": str(cache),
        "GOCACHE": str(cache / "cache"),
        "GOPATH": str(cache / "path"),
    }
    ocb = ensure_ocb(settings, go, core_version(manifest), fetch_environment(settings, cache))
    config = sources.parent / f"{sources.name}.manifest.yaml"
    with step(f"ocb: compile {BINARY} (no network)"):
        run(
            [
                *NICE,
                ocb,
                f"--config={config}",
                "--skip-generate",
                "--skip-get-modules",
                *OCB_FLAGS,
            ],
            env=env,
            cwd=sources,
        )
    partial = target.with_name(f".{BINARY}.partial")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(sources / BINARY, partial)
    partial.chmod(0o755)
    check_components(partial, manifest)
    os.replace(partial, target)


def build_otelcol(settings: Settings, *, update_lock: bool = False) -> Path:
    """Returns the collector binary built from otel/manifest.yaml, building it only when the
    manifest, otel/go.sum, Go or the flags changed."""
    manifest = load_manifest(otel_dir(settings) / "manifest.yaml")
    components(manifest)
    go = find_go(GO_VERSION)
    root = settings.build_dir / "otelcol"
    if update_lock:
        generate(settings, manifest, go, root / "src" / "lock", update_lock=True)
    for lock in ("go.sum", "ocb.sum"):
        if not (otel_dir(settings) / lock).is_file():
            raise CommandError(
                f"otel/{lock} is missing: it pins Go modules of the collector's build by hash; "
                "make it with `scripts/lock-otel`, review it and commit it"
            )
    digest = build_digest(settings, go_version(go))
    binary = root / "bin" / digest[:16] / BINARY
    if binary.is_file():
        return binary
    sources = root / "src" / digest[:16]
    generate(settings, manifest, go, sources, update_lock=False)
    compile_binary(settings, manifest, go, sources, binary)
    for stale in (root / "bin").iterdir():
        if stale != binary.parent:
            shutil.rmtree(stale, ignore_errors=True)
    for stale in (root / "src").iterdir():
        shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink()
    return binary


def main(argv: list[str]) -> int:
    """`python -m stack.build.otelcol [--update-lock]`: build (or re-lock) the collector."""
    from stack.settings import Settings as LoadedSettings

    update = argv == ["--update-lock"]
    if argv and not update:
        print("usage: python -m stack.build.otelcol [--update-lock]", file=sys.stderr)
        return 2
    try:
        print(build_otelcol(LoadedSettings(), update_lock=update))
    except CommandError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
