"""Runs external commands (docker, debootstrap, pip) with clear errors and visible progress."""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

# Commands run with this PATH and nothing else from our environment: settings decide the rest.
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Docker's classic builder: it needs no buildx plugin and works with Engine 20.10.
DOCKER_BUILD_ENVIRONMENT = {"PATH": SYSTEM_PATH, "DOCKER_BUILDKIT": "0"}


class CommandError(RuntimeError):
    """An external command failed; the message says which and how."""


def run(
    argv: Sequence[str | Path],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    capture: bool = False,
    check: bool = True,
    stdin: bytes | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[str]:
    """Runs argv; with capture=False its output streams to ours so long steps show progress."""
    args = [str(a) for a in argv]
    try:
        result = subprocess.run(
            args,
            env=None if env is None else dict(env),
            cwd=cwd,
            input=None if stdin is None else stdin.decode(),
            capture_output=capture,
            text=True,
            timeout=timeout,
        )
    except FileNotFoundError as error:
        raise CommandError(f"{args[0]} is not installed ({error})") from error
    except subprocess.TimeoutExpired as error:
        raise CommandError(f"`{shlex.join(args)}` did not finish in {timeout:.0f}s") from error
    if check and result.returncode != 0:
        detail = (result.stderr or "").strip()[-2000:] if capture else ""
        raise CommandError(
            f"`{shlex.join(args)}` exited {result.returncode}" + (f":\n{detail}" if detail else "")
        )
    return result


def output(argv: Sequence[str | Path], **kwargs: object) -> str:
    """Runs argv and returns its standard output, stripped."""
    return run(argv, capture=True, **kwargs).stdout.strip()  # type: ignore[arg-type]


def output_bytes(
    argv: Sequence[str | Path], *, env: Mapping[str, str] | None = None, timeout: float = 120
) -> bytes:
    """Runs argv and returns its standard output as bytes (an archive, say)."""
    args = [str(a) for a in argv]
    try:
        result = subprocess.run(
            args, env=None if env is None else dict(env), capture_output=True, timeout=timeout
        )
    except FileNotFoundError as error:
        raise CommandError(f"{args[0]} is not installed ({error})") from error
    except subprocess.TimeoutExpired as error:
        raise CommandError(f"`{shlex.join(args)}` did not finish in {timeout:.0f}s") from error
    if result.returncode != 0:
        detail = result.stderr.decode(errors="replace").strip()[-2000:]
        raise CommandError(f"`{shlex.join(args)}` exited {result.returncode}:\n{detail}")
    return result.stdout


@contextmanager
def step(title: str) -> Iterator[None]:
    """Prints a step's start and how long it took."""
    print(f"==> {title}", file=sys.stderr, flush=True)
    started = time.monotonic()
    yield
    print(f"    done in {time.monotonic() - started:.1f}s", file=sys.stderr, flush=True)
