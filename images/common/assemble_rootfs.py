"""Copies what a FROM-scratch image runs into an empty root filesystem: a Python interpreter with
its trimmed stdlib and installed packages (--site), or native binaries (--binary), plus their
shared-library closure, data files (--copy), an /etc/passwd with the one user, and nothing else.
Runs in the build stage."""

from __future__ import annotations

import argparse
import os
import shutil
import stat
import subprocess
import sys
import sysconfig
from pathlib import Path

# Stdlib parts no server of ours imports: tools, GUIs, tests, and the installers an attacker
# would use to add code.
STDLIB_EXCLUDED = {
    "ensurepip",
    "idlelib",
    "tkinter",
    "turtledemo",
    "test",
    "lib2to3",
    "pydoc_data",
    "distutils",
    "venv",
    "sqlite3",
    "dbm",
    "curses",
    "site-packages",
    "dist-packages",
    "config-3.11-x86_64-linux-gnu",
    "turtle.py",
}
# Extension modules that pull in libraries the servers do not need.
DYNLOAD_EXCLUDED_PREFIXES = (
    "_curses",
    "readline",
    "_dbm",
    "_gdbm",
    "_sqlite3",
    "_tkinter",
    "xxlimited",
    "_test",
    "_ctypes_test",
    "_xxtestfuzz",
    "_xxsubinterpreters",
    "nis",
    "ossaudiodev",
    "audioop",
)


def copy_file(src: Path, root: Path) -> None:
    """Copies src (following links) to the same path under root, keeping the link names too."""
    dest = root / str(src).lstrip("/")
    real = src.resolve()
    real_dest = root / str(real).lstrip("/")
    real_dest.parent.mkdir(parents=True, exist_ok=True)
    if not real_dest.exists():
        shutil.copy2(real, real_dest)
    if dest != real_dest and not dest.exists() and not dest.is_symlink():
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(f"/{real_dest.relative_to(root)}", dest)


def shared_libraries(binaries: list[Path]) -> set[Path]:
    libs: set[Path] = set()
    for binary in binaries:
        out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True).stdout
        for line in out.splitlines():
            parts = line.split()
            if "=>" in parts and len(parts) >= 3 and parts[2].startswith("/"):
                libs.add(Path(parts[2]))
            elif parts and parts[0].startswith("/"):
                libs.add(Path(parts[0]))
    return libs


def copy_tree(src: Path, dest: Path, skip: set[str]) -> None:
    def ignore(directory: str, names: list[str]) -> set[str]:
        ignored = {n for n in names if n in skip}
        if Path(directory).name == "lib-dynload":
            ignored |= {n for n in names if n.startswith(DYNLOAD_EXCLUDED_PREFIXES)}
        return ignored

    shutil.copytree(src, dest, symlinks=False, ignore=ignore, dirs_exist_ok=True)


def copy_python(root: Path, site: Path) -> list[Path]:
    """Copies the interpreter, its trimmed stdlib and the packages at `site`; returns the ELF
    files whose libraries the image needs."""
    executable = Path(sys.executable).resolve()
    copy_file(executable, root)
    python3 = root / "usr/bin/python3"
    if not python3.exists():
        os.symlink(executable.name, python3)

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    copy_tree(stdlib, root / str(stdlib).lstrip("/"), STDLIB_EXCLUDED)
    shutil.rmtree(root / str(site).lstrip("/") / "bin", ignore_errors=True)

    binaries = [executable]
    for tree in (root / str(stdlib).lstrip("/"), root / str(site).lstrip("/")):
        binaries += [p for p in tree.rglob("*.so*") if p.is_file()]
    return binaries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("root", type=Path)
    parser.add_argument("--uid", type=int, required=True, help="uid and gid of the one user")
    parser.add_argument("--user", required=True)
    parser.add_argument(
        "--site", type=Path, help="path of the installed Python packages in the image"
    )
    parser.add_argument(
        "--binary", type=Path, action="append", default=[], help="a native program to copy"
    )
    parser.add_argument(
        "--copy", type=Path, action="append", default=[], help="a data file or folder to copy"
    )
    parser.add_argument(
        "--mkdir", type=Path, action="append", default=[], help="an empty folder to create"
    )
    parser.add_argument(
        "--tmp",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="create /tmp (mode 1777) as the mount point of a tmpfs",
    )
    args = parser.parse_args()
    root: Path = args.root

    # Merged /usr, as in Debian 12, so library paths from ldd resolve either way.
    (root / "usr/lib").mkdir(parents=True, exist_ok=True)
    (root / "usr/lib64").mkdir(parents=True, exist_ok=True)
    for link in ("lib", "lib64"):
        if not (root / link).exists():
            os.symlink(f"usr/{link}", root / link)

    binaries = copy_python(root, args.site) if args.site else []
    for binary in args.binary:
        copy_file(binary, root)
        binaries.append(binary.resolve())
    for lib in sorted(shared_libraries(binaries)):
        copy_file(lib, root)
    for data in args.copy:
        if data.is_dir():
            copy_tree(data.resolve(), root / str(data).lstrip("/"), set())
        else:
            copy_file(data, root)
    for directory in args.mkdir:
        (root / str(directory).lstrip("/")).mkdir(parents=True, exist_ok=True)

    etc = root / "etc"
    etc.mkdir(exist_ok=True)
    (etc / "passwd").write_text(
        f"root:x:0:0:root:/nonexistent:/nonexistent\n"
        f"{args.user}:x:{args.uid}:{args.uid}::/nonexistent:/nonexistent\n"
    )
    (etc / "group").write_text(f"root:x:0:\n{args.user}:x:{args.uid}:\n")
    (etc / "nsswitch.conf").write_text("hosts: files dns\npasswd: files\ngroup: files\n")
    tmp = root / "tmp"
    if args.tmp:
        tmp.mkdir(exist_ok=True)
        tmp.chmod(0o1777)

    # IMG-05: nothing in the image may be setuid or setgid; IMG-03: nothing is writable by the
    # app user. IMG-04 is the whole of this script: only what is copied above exists.
    for path in root.rglob("*"):
        if path.is_symlink():
            continue
        mode = path.lstat().st_mode
        cleared = mode & ~(stat.S_ISUID | stat.S_ISGID)
        if path != tmp:
            cleared &= ~(stat.S_IWGRP | stat.S_IWOTH)
        if cleared != mode:
            path.chmod(stat.S_IMODE(cleared))


if __name__ == "__main__":
    main()
