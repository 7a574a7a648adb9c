"""Pins Debian packages by sha256 in locks/*.debs and fetches exactly those into build/debs/.

A lock names its top-level packages on a `# packages:` header line and lists, one per line,
`package version arch sha256 filename` for each of them and every dependency the base image
lacks. `scripts/lock-debs` regenerates it; `fetch_debs` downloads the locked versions with apt in
a container from the base image (so apt checks the archive's signatures too), then checks every
file against its pinned sha256 before anything may use it.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import re
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from stack.build import stamp
from stack.build.base import ensure_base_image
from stack.process import CommandError, step
from stack.settings import Settings

PACKAGES_HEADER = "# packages:"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_FILENAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+~%_-]*\.deb$")
_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9.+-]+$")

# Shared by both container scripts: point apt at the configured mirror and suite alone.
_APT_SOURCES = """set -eu
printf 'deb %s %s main\\n' "$MIRROR" "$SUITE" > /etc/apt/sources.list
rm -f /etc/apt/sources.list.d/*
apt-get -qq -o Acquire::Retries=3 update >&2
"""
# Resolves the packages against the base's dpkg status: what apt would add is what gets pinned.
_RESOLVE = (
    _APT_SOURCES
    + """apt-get -qq -o Acquire::Retries=3 install --download-only --no-install-recommends -y \\
  "$@" >&2
cd /var/cache/apt/archives
for deb in *.deb; do
  printf '%s %s %s %s %s\\n' "$(dpkg-deb -f "$deb" Package)" "$(dpkg-deb -f "$deb" Version)" \
    "$(dpkg-deb -f "$deb" Architecture)" "$(sha256sum "$deb" | cut -d' ' -f1)" "$deb"
done
"""
)
# Downloads exact versions (package=version) and writes them to stdout as a tar stream.
_DOWNLOAD = (
    _APT_SOURCES
    + """mkdir /tmp/debs && chown _apt /tmp/debs && cd /tmp/debs
apt-get -qq -o Acquire::Retries=3 download "$@" >&2
tar -cf - -- *.deb
"""
)


class LockedDeb(NamedTuple):
    """One pinned Debian package file."""

    package: str
    version: str
    arch: str
    sha256: str
    filename: str

    def __str__(self) -> str:
        return " ".join(self)


def parse_lock(lock: Path) -> list[LockedDeb]:
    entries: list[LockedDeb] = []
    for number, raw in enumerate(lock.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) != 5:
            raise CommandError(f"{lock}:{number}: want `package version arch sha256 filename`")
        entry = LockedDeb(*fields)
        if (
            not _PACKAGE.match(entry.package)
            or not _SHA256.match(entry.sha256)
            or not _FILENAME.match(entry.filename)
        ):
            raise CommandError(f"{lock}:{number}: malformed entry {line!r}")
        entries.append(entry)
    if not entries:
        raise CommandError(f"{lock} pins no packages; run scripts/lock-debs {lock}")
    return entries


def lock_packages(lock: Path) -> list[str]:
    """The top-level packages a lock was resolved from, read from its `# packages:` header."""
    for line in lock.read_text().splitlines():
        if line.startswith(PACKAGES_HEADER):
            return line.removeprefix(PACKAGES_HEADER).split()
    raise CommandError(f"{lock} has no `{PACKAGES_HEADER} ...` header line")


def debs_dir(settings: Settings, lock: Path) -> Path:
    return settings.build_dir / "debs" / lock.stem


def verify_debs(directory: Path, entries: Sequence[LockedDeb], lock: Path) -> None:
    """Refuses unless the folder holds exactly the locked files, each with its pinned sha256."""
    wanted = {entry.filename for entry in entries}
    present = {path.name for path in directory.glob("*.deb")}
    if missing := sorted(wanted - present):
        raise CommandError(f"not fetched from the mirror: {', '.join(missing)}")
    if extra := sorted(present - wanted):
        raise CommandError(f"{directory} holds files {lock.name} does not pin: {', '.join(extra)}")
    for entry in entries:
        actual = hashlib.sha256((directory / entry.filename).read_bytes()).hexdigest()
        if actual != entry.sha256:
            raise CommandError(
                f"{entry.filename}: sha256 {actual} does not match {entry.sha256} pinned in "
                f"{lock}; refusing to use it. If the mirror really publishes a new build, "
                f"review it and run scripts/lock-debs {lock}"
            )


def _run_in_base(settings: Settings, script: str, args: Sequence[str]) -> bytes:
    base = ensure_base_image(settings)
    argv = [
        "docker",
        "run",
        "--rm",
        "--network",
        "bridge",
        "-e",
        f"MIRROR={settings.debian_mirror}",
        "-e",
        f"SUITE={settings.debian_suite}",
        base,
        "sh",
        "-c",
        script,
        "sh",
        *args,
    ]
    result = subprocess.run(argv, capture_output=True)
    if result.returncode != 0:
        detail = result.stderr.decode(errors="replace").strip()[-2000:]
        raise CommandError(f"apt in {base} exited {result.returncode}:\n{detail}")
    return result.stdout


def _extract_debs(stream: bytes, directory: Path) -> None:
    with tarfile.open(fileobj=io.BytesIO(stream)) as archive:
        for member in archive:
            name = Path(member.name).name
            if not member.isfile() or not _FILENAME.match(name):
                raise CommandError(f"unexpected entry {member.name!r} in apt's download")
            source = archive.extractfile(member)
            assert source is not None
            (directory / name).write_bytes(source.read())


def fetch_debs(settings: Settings, lock: Path) -> Path:
    """Downloads every pinned .deb of `lock` and checks it; a no-op when the lock is unchanged."""
    target = debs_dir(settings, lock)
    if stamp.holds(target, lock):
        return target
    entries = parse_lock(lock)
    partial = target.with_name(f".{target.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    specs = [f"{entry.package}={entry.version}" for entry in entries]
    with step(f"fetch {len(entries)} Debian packages for {lock.name} into {target}"):
        try:
            _extract_debs(_run_in_base(settings, _DOWNLOAD, specs), partial)
            verify_debs(partial, entries, lock)
        except CommandError as error:
            shutil.rmtree(partial, ignore_errors=True)
            if "was not found" in str(error) or "Unable to locate" in str(error):
                raise CommandError(
                    f"{error}\n{settings.debian_mirror} {settings.debian_suite} no longer has a "
                    f"version pinned in {lock} (a point release replaced it): run "
                    f"scripts/lock-debs {lock}, review the new versions and rebuild"
                ) from error
            raise
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    stamp.mark(target, lock)
    return target


def write_lock(settings: Settings, lock: Path, packages: Sequence[str]) -> list[LockedDeb]:
    """Resolves `packages` with apt against the base image and writes the pinned lock file."""
    base = ensure_base_image(settings)
    with step(f"resolve {' '.join(packages)} against {base} into {lock}"):
        listing = _run_in_base(settings, _RESOLVE, packages).decode()
    entries = sorted(LockedDeb(*line.split()) for line in listing.splitlines() if line.strip())
    header = [
        f"# Debian packages of the {lock.stem} image, pinned by sha256. Generated by "
        "scripts/lock-debs; do not edit.",
        f"{PACKAGES_HEADER} {' '.join(packages)}",
        "# Resolved with `apt-get install --download-only --no-install-recommends "
        f"{' '.join(packages)}` from {settings.debian_mirror} {settings.debian_suite} main in a "
        f"container from {base}: every dependency the base image lacks.",
        "# package version arch sha256 filename",
    ]
    lock.write_text("\n".join([*header, *map(str, entries)]) + "\n")
    parse_lock(lock)
    return entries


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/lock-debs",
        description="Regenerate Debian package locks (locks/*.debs) from their packages header.",
    )
    parser.add_argument("lock", nargs="?", type=Path, help="one lock (default: every locks/*.debs)")
    parser.add_argument("packages", nargs="*", help="top-level packages (default: the header's)")
    args = parser.parse_args(argv)
    settings = Settings()
    locks = [args.lock] if args.lock else sorted((settings.repo_root / "locks").glob("*.debs"))
    try:
        for lock in locks:
            packages = args.packages or lock_packages(lock)
            entries = write_lock(settings, lock, packages)
            print(f"{lock}: {len(entries)} packages")
    except CommandError as error:
        print(f"lock-debs: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
