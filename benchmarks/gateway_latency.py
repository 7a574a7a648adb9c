"""Latency the gateway adds: tools/list and read_account, qc-mcp directly against through the
gateway, at 1, 16 and 64 concurrent MCP sessions, p50 and p99, in one run on one stack.

Brings up its own test stack (compose project qcstack-bench, canary credentials in a private
folder, the QuantConnect API double answering read_account), runs benchmarks/gateway_load.py in
a container of the qc-mcp image attached to the stack's `mcp` network (qc-mcp:8000, which has no
published port) and `door` network (gateway:8080 with the test bearer token, and the
gateway-relay in front of it, which is the way host clients come in), prints a table and the
overhead, then takes the stack down. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from stack.process import SYSTEM_PATH, CommandError  # noqa: E402
from stack.settings import Settings  # noqa: E402
from stack.suites import prepare_test_secrets, test_project  # noqa: E402
from stack.testdata import TEST_GATEWAY_TOKEN  # noqa: E402

LOAD_SCRIPT = REPO_ROOT / "benchmarks" / "gateway_load.py"
CONCURRENCY = (1, 16, 64)
OPS = ("tools/list", "read_account")
TARGET_P50_MS = 2.0
TARGET_P99_MS = 10.0
# The gateway's own limits would refuse a benchmark's worth of read_account calls.
BENCH_GATEWAY_SETTINGS = {"default_rate_limit": "1000000/60"}
STATS = ("docker", "stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}}")


class BenchError(RuntimeError):
    """The benchmark could not measure; the message says why."""


def docker(*args: str, capture: bool = True, check: bool = True) -> str:
    result = subprocess.run(
        ["docker", *args],
        capture_output=capture,
        text=True,
        env={"PATH": SYSTEM_PATH},
        check=False,
    )
    if check and result.returncode != 0:
        raise BenchError(f"docker {' '.join(args[:3])} ... failed: {(result.stderr or '')[-800:]}")
    return result.stdout or ""


def percentile(samples: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(samples)
    if not ordered:
        return math.nan
    position = (len(ordered) - 1) * q
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


class MemorySampler(threading.Thread):
    """Samples the containers' memory (docker stats) every few seconds while the load runs."""

    def __init__(self, containers: list[str]) -> None:
        super().__init__(daemon=True)
        self.containers = containers
        self.peak_mib: dict[str, float] = {}
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(2.0):
            out = subprocess.run(
                [*STATS, *self.containers],
                capture_output=True,
                text=True,
                env={"PATH": SYSTEM_PATH},
                check=False,
            ).stdout
            for line in out.splitlines():
                name, _, usage = line.partition(" ")
                mib = _mib(usage.split("/")[0].strip())
                if mib is not None:
                    self.peak_mib[name] = max(mib, self.peak_mib.get(name, 0.0))


def _mib(text: str) -> float | None:
    units = {"KiB": 1 / 1024, "MiB": 1.0, "GiB": 1024.0, "B": 1 / 1024 / 1024}
    for unit, factor in units.items():
        if text.endswith(unit):
            try:
                return float(text[: -len(unit)]) * factor
            except ValueError:
                return None
    return None


def run_load(settings: Settings, project: str, plan: dict[str, Any]) -> dict[str, Any]:
    """Runs the load generator; returns what it measured, and whether it finished."""
    name = f"{project}-load"
    docker("rm", "-f", name, check=False)
    docker(
        "create",
        "--name", name,
        "--label", "qcstack.bench=gateway-latency",
        "--network", f"{project}_mcp",
        "--user", "10001:10001",
        "--read-only",
        "--cap-drop", "ALL",
        "--security-opt", "no-new-privileges:true",
        "--pids-limit", "64",
        "--entrypoint", "/usr/bin/python3",
        "-v", f"{LOAD_SCRIPT}:/bench/load.py:ro",
        settings.image("qc-mcp"),
        "/bench/load.py", json.dumps(plan),
    )  # fmt: skip
    sampler = MemorySampler([f"{project}-{s}-1" for s in ("gateway", "qc-mcp")])
    latencies: dict[str, list[float]] = {}
    errors: dict[str, list[str]] = {}
    try:
        docker("network", "connect", f"{project}_door", name)
        sampler.start()
        result = subprocess.run(
            ["docker", "start", "--attach", name],
            stdout=subprocess.PIPE,
            text=True,
            env={"PATH": SYSTEM_PATH},
            check=False,
        )
        for line in result.stdout.splitlines():
            batch = json.loads(line)
            latencies.setdefault(batch["key"], []).extend(batch["ms"])
            errors.setdefault(batch["key"], []).extend(batch["errors"])
        oom_killed = [
            container
            for container in sampler.containers
            if docker("inspect", "--format", "{{.State.OOMKilled}}", container).strip() == "true"
        ]
    finally:
        sampler.stopping.set()
        docker("rm", "-f", name, check=False)
    return {
        "latencies_ms": latencies,
        "errors": errors,
        "finished": result.returncode == 0,
        "peak_mib": sampler.peak_mib,
        "oom_killed": oom_killed,
    }


def report(data: dict[str, Any], paths: list[str], concurrency: list[int]) -> bool:
    """Prints the table; True when the gateway met both targets everywhere."""
    latencies: dict[str, list[float]] = data["latencies_ms"]
    errors: dict[str, list[str]] = data["errors"]
    met = True
    print()
    header = f"{'operation':<13}{'c':>3}  {'path':<9}{'n':>5}{'err':>5}{'p50 ms':>9}{'p99 ms':>9}"
    print(header + f"{'+p50 ms':>10}{'+p99 ms':>10}{'x p50':>8}{'x p99':>8}")
    print("-" * (len(header) + 36))
    for op in OPS:
        for c in concurrency:
            direct = latencies.get(f"direct|{op}|{c}", [])
            d50, d99 = percentile(direct, 0.5), percentile(direct, 0.99)
            for path in paths:
                samples = latencies.get(f"{path}|{op}|{c}", [])
                failed = len(errors.get(f"{path}|{op}|{c}", []))
                p50, p99 = percentile(samples, 0.5), percentile(samples, 0.99)
                line = (
                    f"{op:<13}{c:>3}  {path:<9}{len(samples):>5}{failed:>5}{p50:>9.2f}{p99:>9.2f}"
                )
                if path != "direct":
                    line += f"{p50 - d50:>+10.2f}{p99 - d99:>+10.2f}"
                    line += f"{p50 / d50:>8.2f}{p99 / d99:>8.2f}"
                    if path == "gateway":
                        met &= p50 - d50 < TARGET_P50_MS and p99 - d99 < TARGET_P99_MS
                print(line)
        print()
    for key, messages in errors.items():
        if messages:
            print(f"errors in {key}: {len(messages)}, first: {messages[0]}")
            met = False
    for container, mib in sorted(data["peak_mib"].items()):
        print(f"peak memory seen (docker stats every 2 s): {container} {mib:.0f} MiB")
    for container in data["oom_killed"]:
        print(f"{container} was killed for running out of memory")
        met = False
    if not data["finished"]:
        print("the load generator did not finish: the table holds what it measured until then")
        met = False
    return met


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", default="qcstack-bench")
    parser.add_argument("--egress-subnet", type=IPv4Network, default=IPv4Network("10.231.250.0/28"))
    parser.add_argument("--gateway-port", type=int, default=18070)
    parser.add_argument("--calls", type=int, default=600, help="calls per path, op and c")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument(
        "--concurrency",
        type=int,
        action="append",
        metavar="C",
        help="concurrent sessions to measure at (repeatable); default: 1, 16 and 64",
    )
    parser.add_argument(
        "--relay", action="store_true", help="also measure through gateway-relay (slower run)"
    )
    parser.add_argument(
        "--gateway-memory",
        metavar="SIZE",
        help="override the gateway's memory limit for this run (e.g. 512m); default: the stack's",
    )
    parser.add_argument("--keep", action="store_true", help="leave the stack running")
    args = parser.parse_args()

    settings = Settings(gateway=BENCH_GATEWAY_SETTINGS)
    for name in ("qc-mcp", "gateway", "gateway-relay", "egress-proxy"):
        if not docker("image", "ls", "-q", settings.image(name)).strip():
            print(f"{settings.image(name)} is missing: run bin/qcstack build", file=sys.stderr)
            return 1
    secrets = Path(tempfile.mkdtemp(prefix="qcstack-bench-secrets-"))
    os.chmod(secrets, 0o700)
    overrides = []
    if args.gateway_memory:
        override = secrets / "gateway-memory.yaml"
        override.write_text(
            "services:\n  gateway:\n"
            f"    mem_limit: {args.gateway_memory}\n    memswap_limit: {args.gateway_memory}\n"
        )
        overrides.append(override)
        print(
            f"note: the gateway's memory limit is {args.gateway_memory} in this run",
            file=sys.stderr,
        )
    project = test_project(
        settings,
        args.project,
        overrides,
        egress_subnet=args.egress_subnet,
        gateway_port=args.gateway_port,
        secrets_dir=secrets,
    )
    paths = ["direct", "gateway"] + (["relay"] if args.relay else [])
    concurrency = sorted(set(args.concurrency or CONCURRENCY))
    token = TEST_GATEWAY_TOKEN
    plan = {
        "paths": {
            "direct": {"url": "http://qc-mcp:8000/mcp", "token": None},
            "gateway": {"url": "http://gateway:8080/mcp", "token": token},
            "relay": {"url": "http://gateway-relay:8080/mcp", "token": token},
        },
        "concurrency": concurrency,
        "ops": list(OPS),
        "calls": {str(c): args.calls for c in concurrency},
        "rounds": args.rounds,
        "warmup": 3,
        "deadline_seconds": 2700,
    }
    plan["paths"] = {k: v for k, v in plan["paths"].items() if k in paths}
    try:
        prepare_test_secrets(settings, secrets)
        print(f"==> clean start of compose project {project.name}", file=sys.stderr)
        project.down(remove_volumes=True)
        project.up(wait_timeout=240)
        print("==> measuring (the load generator runs in a qc-mcp container)", file=sys.stderr)
        data = run_load(settings, project.name, plan)
    except (BenchError, CommandError) as error:
        print(f"gateway latency: {error}", file=sys.stderr)
        print(project.logs(), file=sys.stderr)
        return 1
    finally:
        if not args.keep:
            project.down(remove_volumes=True)
        shutil.rmtree(secrets, ignore_errors=True)
    met = report(data, paths, concurrency)
    if args.gateway_memory:
        print(f"note: run with the gateway's memory limit overridden to {args.gateway_memory}")
    print(
        f"overhead = gateway - direct, same run, same client; target: p50 < {TARGET_P50_MS:g} ms "
        f"and p99 < {TARGET_P99_MS:g} ms at every concurrency measured: "
        f"{'met' if met else 'NOT met'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
