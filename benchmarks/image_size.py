"""Compares the size of our qc-mcp image with a local replica of the official server image."""

from __future__ import annotations

import hashlib
import re
import shlex
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from stack.process import DOCKER_BUILD_ENVIRONMENT, SYSTEM_PATH  # noqa: E402
from stack.settings import Settings  # noqa: E402

SETTINGS = Settings()
OURS = "qcstack/qc-mcp:local"
REPLICA = "qcstack-bench/official-replica:local"
INPUTS_LABEL = "qcstack.bench.inputs"
STAGE_LABEL = "qcstack.bench.stage"
SERVER_REQUIREMENTS = REPO_ROOT / "locks" / "qc-mcp.in"
DEV_LOCK = REPO_ROOT / "locks" / "dev.txt"
UV = REPO_ROOT / ".venv" / "bin" / "uv"
TARGET_RATIO = 1 / 3
MB = 1_000_000
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
WHEEL_TAGS = (
    "--python-version", "3.11", "--implementation", "cp",
    "--abi", "cp311", "--abi", "abi3", "--abi", "none",
    "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64",
    "--platform", "manylinux2014_x86_64",
)  # fmt: skip

# The official recipe (python:3.11-slim + uv copied in + the server and its full dependency set
# in /app/.venv, run as root), on our Debian base because no registry can be reached here. The
# install stage keeps the wheels out of the measured image, as the official `uv sync` does.
REPLICA_DOCKERFILE = """\
ARG BASE_IMAGE
FROM ${BASE_IMAGE} AS install
LABEL qcstack.bench.stage=install
COPY uv uvx /bin/
COPY requirements.txt /tmp/requirements.txt
COPY wheels/ /wheels/
ENV UV_PYTHON_DOWNLOADS=never UV_NO_CACHE=1
RUN uv venv --python /usr/bin/python3.11 /app/.venv \\
 && uv pip install --python /app/.venv/bin/python --offline --no-index --find-links /wheels \\
        --require-hashes -r /tmp/requirements.txt \\
 && uv pip check --python /app/.venv/bin/python \\
 && /app/.venv/bin/python -c "import mcp.server.fastmcp, jwt, cryptography, typer, rich"

FROM ${BASE_IMAGE}
COPY uv uvx /bin/
COPY --from=install /app/.venv /app/.venv
WORKDIR /app
ENV PATH=/app/.venv/bin:$PATH
"""

APPROXIMATION_NOTE = """\
note: the official image is FROM python:3.11-slim (Debian bookworm-slim plus CPython 3.11
      built from source in /usr/local). No registry is reachable here, so the replica is built
      FROM qcstack's debootstrap bookworm base with Debian's python3.11 instead: same Debian
      release, same wheels, same uv and install layout, but a different base layer, so the
      official figure is an approximation. To redo the ratio with the real base, add the
      size of python:3.11-slim to the "added by the recipe" figure."""


class BenchError(RuntimeError):
    """A step of the benchmark failed; the message says which and how."""


def run(argv: list[str], *, env: dict[str, str] | None = None) -> str:
    """Runs argv and returns its standard output; raises BenchError when it fails."""
    try:
        result = subprocess.run(argv, capture_output=True, text=True, env=env)
    except FileNotFoundError as error:
        raise BenchError(f"{argv[0]} is not installed ({error})") from error
    if result.returncode != 0:
        detail = ANSI_ESCAPE.sub("", result.stderr.strip() or result.stdout.strip())[-3000:]
        raise BenchError(f"`{shlex.join(argv)}` exited {result.returncode}:\n{detail}")
    return result.stdout.strip()


def progress(message: str) -> None:
    print(f"==> {message}", file=sys.stderr, flush=True)


def image_exists(tag: str) -> bool:
    found = subprocess.run(["docker", "image", "inspect", tag], capture_output=True)
    return found.returncode == 0


def image_label(tag: str, label: str) -> str:
    return run(["docker", "image", "inspect", "-f", f'{{{{index .Config.Labels "{label}"}}}}', tag])


def image_id(tag: str) -> str:
    return run(["docker", "image", "inspect", "-f", "{{.Id}}", tag])


def image_size(tag: str) -> int:
    return int(run(["docker", "image", "inspect", "-f", "{{.Size}}", tag]))


def base_image_of_ours() -> str:
    """The Debian base our image was built from, as recorded in its qcstack.base label."""
    if not image_exists(OURS):
        raise BenchError(f"{OURS} is missing: run `bin/qcstack build` first")
    base = image_label(OURS, "qcstack.base")
    if not base or base == "<no value>" or not image_exists(base):
        raise BenchError(f"the base image of {OURS} ({base or 'no qcstack.base label'}) is missing")
    return base


def requirement_block(lock_text: str, name: str) -> str:
    """The pinned entry for `name` in a hashed lock file: its `name==` line and hash lines."""
    lines = lock_text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(f"{name}==")), None)
    if start is None:
        raise BenchError(f"{name} is not pinned in the lock")
    block = [lines[start]]
    while block[-1].endswith("\\"):
        block.append(lines[start + len(block)])
    return "\n".join(block) + "\n"


def compile_full_lock(target: Path) -> str:
    """Resolves the server with its full dependency set (mcp[cli], pyjwt[crypto]) with hashes."""
    run(
        [
            str(UV), "pip", "compile", str(SERVER_REQUIREMENTS), "--generate-hashes",
            "--no-header", "--quiet", "--python-version", "3.11",
            "--python-platform", "x86_64-manylinux_2_28", "-o", str(target),
        ],
        env={"PATH": SYSTEM_PATH, "SSL_CERT_FILE": str(SETTINGS.ca_bundle)},
    )  # fmt: skip
    return target.read_text()


def download_wheels(lock: Path, target: Path) -> None:
    """Fetches every wheel `lock` pins; pip checks each file against its sha256 pins."""
    run(
        [
            sys.executable, "-m", "pip", "download", "--quiet", "--progress-bar", "off",
            "--require-hashes", "--no-deps", "--only-binary=:all:", *WHEEL_TAGS,
            "--cert", str(SETTINGS.ca_bundle), "-d", str(target), "-r", str(lock),
        ]
    )  # fmt: skip


def extract_uv_binaries(wheel_dir: Path, target: Path) -> None:
    """Copies the uv and uvx executables out of the uv wheel, as the official image has them."""
    wheels = list(wheel_dir.glob("uv-*.whl"))
    if len(wheels) != 1:
        raise BenchError(f"expected one uv wheel in {wheel_dir}, found {len(wheels)}")
    with zipfile.ZipFile(wheels[0]) as wheel:
        for name in ("uv", "uvx"):
            member = next(m for m in wheel.namelist() if m.endswith(f".data/scripts/{name}"))
            (target / name).write_bytes(wheel.read(member))
            (target / name).chmod(0o755)


def inputs_digest(base_id: str, uv_pin: str, server_lock: str) -> str:
    """One hash of everything the replica is built from; it decides whether to rebuild."""
    digest = hashlib.sha256()
    for part in (REPLICA_DOCKERFILE, base_id, uv_pin, server_lock):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def stage_context(context: Path, uv_pin: str, server_lock: Path) -> None:
    """Fills a build context: Dockerfile, uv binaries, the hashed lock and its wheels."""
    (context / "Dockerfile").write_text(REPLICA_DOCKERFILE)
    (context / "requirements.txt").write_text(server_lock.read_text())
    uv_lock = context.parent / "uv-requirements.txt"
    uv_lock.write_text(uv_pin)
    uv_wheel_dir = context.parent / "uv-wheel"
    download_wheels(uv_lock, uv_wheel_dir)
    extract_uv_binaries(uv_wheel_dir, context)
    download_wheels(server_lock, context / "wheels")


def remove_install_stage_images() -> None:
    """Removes the untagged install-stage image that the legacy builder leaves behind."""
    ids = run(
        [
            "docker", "image", "ls", "-q", "--filter", "dangling=true",
            "--filter", f"label={STAGE_LABEL}=install",
        ]
    ).split()  # fmt: skip
    for stage_id in sorted(set(ids)):
        run(["docker", "image", "rm", stage_id])


def build_replica(context: Path, base: str, inputs: str) -> None:
    """Builds and tags the replica, then drops the install stage and any replica it replaced."""
    previous = image_id(REPLICA) if image_exists(REPLICA) else None
    try:
        run(
            [
                "docker", "build", "--quiet", "--rm", "--force-rm", "--build-arg",
                f"BASE_IMAGE={base}", "--label", f"{INPUTS_LABEL}={inputs}", "-t", REPLICA,
                str(context),
            ],
            env=DOCKER_BUILD_ENVIRONMENT,
        )  # fmt: skip
    finally:
        remove_install_stage_images()
    if previous and previous != image_id(REPLICA):
        subprocess.run(["docker", "image", "rm", previous], capture_output=True)


def ensure_replica(base: str) -> None:
    """Builds the official-recipe replica unless the tagged one was built from these inputs."""
    uv_pin = requirement_block(DEV_LOCK.read_text(), "uv")
    with tempfile.TemporaryDirectory(prefix="qcstack-bench-") as scratch:
        work = Path(scratch)
        server_lock = work / "official-requirements.txt"
        progress("resolving the official dependency set with uv pip compile")
        inputs = inputs_digest(image_id(base), uv_pin, compile_full_lock(server_lock))
        if image_exists(REPLICA) and image_label(REPLICA, INPUTS_LABEL) == inputs:
            progress(f"{REPLICA} is up to date (inputs {inputs[:12]})")
            return
        context = work / "context"
        (context / "wheels").mkdir(parents=True)
        progress("fetching uv and the server's wheels (sha256-pinned)")
        stage_context(context, uv_pin, server_lock)
        progress(f"building {REPLICA} FROM {base} with the legacy builder")
        build_replica(context, base, inputs)


def megabytes(size: float) -> str:
    return f"{size / MB:.1f}"


def report(base: str) -> None:
    ours, official, base_size = image_size(OURS), image_size(REPLICA), image_size(base)
    ratio = ours / official
    width = max(len(OURS), len(REPLICA))
    print(f"{'image':<{width}}  {'size (MB)':>9}")
    print(f"{OURS:<{width}}  {megabytes(ours):>9}")
    print(f"{REPLICA:<{width}}  {megabytes(official):>9}")
    print(f"  base {base}: {megabytes(base_size)} MB; added by the recipe: "
          f"{megabytes(official - base_size)} MB")  # fmt: skip
    print(f"ratio ours/official: {ratio:.3f}")
    print(f"target under 1/3: {'met' if ratio < TARGET_RATIO else 'not met'}")
    break_even = ours / TARGET_RATIO - (official - base_size)
    print(f"  with the real python:3.11-slim base, the target holds if that base is over "
          f"{megabytes(break_even)} MB")  # fmt: skip
    print("(MB = 10^6 bytes, from `docker image inspect .Size`, uncompressed)")
    print(APPROXIMATION_NOTE)


def main() -> int:
    try:
        base = base_image_of_ours()
        ensure_replica(base)
        report(base)
    except BenchError as error:
        print(f"image_size: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
