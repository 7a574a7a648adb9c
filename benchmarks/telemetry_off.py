"""Tool calls with the collector running against stopped: latency, failures and dropped spans.

Brings up its own test stack (compose project qcstack-bench-otel), then, in alternating rounds,
runs read_account through the gateway at 1 and 16 concurrent sessions with the otel-collector
running and with it stopped (`docker stop`), from the load generator of
benchmarks/gateway_latency.py. Prints p50 and p99 per state, the difference, failed calls, and
the gateway's count of dropped spans; then takes the stack down. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gateway_latency import (
    BENCH_GATEWAY_SETTINGS,
    BenchError,
    docker,
    percentile,
    run_load,
)

from stack.process import CommandError
from stack.settings import Settings
from stack.suites import prepare_test_secrets, test_project
from stack.testdata import TEST_GATEWAY_TOKEN

CONCURRENCY = (1, 16)
STATES = ("running", "stopped")
HEALTH = (
    "import json, urllib.request; "
    "print(json.load(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=5))"
    "['spans_dropped'])"
)


def dropped_spans(project: str) -> int:
    return int(docker("exec", f"{project}-gateway-1", "/usr/bin/python3", "-c", HEALTH).strip())


def measure(settings: Settings, project: str, calls: int, rounds: int) -> dict[str, Any]:
    plan = {
        "paths": {"gateway": {"url": "http://gateway:8080/mcp", "token": TEST_GATEWAY_TOKEN}},
        "concurrency": list(CONCURRENCY),
        "ops": ["read_account"],
        "calls": {str(c): calls for c in CONCURRENCY},
        "rounds": 1,
        "warmup": 3,
        "deadline_seconds": 1200,
    }
    collector = f"{project}-otel-collector-1"
    samples: dict[str, list[float]] = {}
    failures: dict[str, int] = {}
    dropped = {"running": 0, "stopped": 0}
    for _ in range(rounds):
        for state in STATES:
            docker("start" if state == "running" else "stop", collector)
            before = dropped_spans(project)
            data = run_load(settings, project, plan)
            dropped[state] += dropped_spans(project) - before
            for c in CONCURRENCY:
                key = f"gateway|read_account|{c}"
                samples.setdefault(f"{state}|{c}", []).extend(data["latencies_ms"].get(key, []))
                failures[f"{state}|{c}"] = failures.get(f"{state}|{c}", 0) + len(
                    data["errors"].get(key, [])
                )
    docker("start", collector)
    return {"samples": samples, "failures": failures, "dropped": dropped}


def report(result: dict[str, Any]) -> None:
    print()
    header = f"{'c':>3}  {'collector':<10}{'n':>6}{'err':>5}{'p50 ms':>9}{'p99 ms':>9}"
    print(header + f"{'+p50':>8}{'+p99':>8}")
    for c in CONCURRENCY:
        base = result["samples"][f"running|{c}"]
        for state in STATES:
            samples = result["samples"][f"{state}|{c}"]
            p50, p99 = percentile(samples, 0.5), percentile(samples, 0.99)
            line = f"{c:>3}  {state:<10}{len(samples):>6}{result['failures'][f'{state}|{c}']:>5}"
            line += f"{p50:>9.2f}{p99:>9.2f}"
            if state == "stopped":
                line += f"{p50 - percentile(base, 0.5):>+8.2f}{p99 - percentile(base, 0.99):>+8.2f}"
            print(line)
    print()
    dropped = result["dropped"]
    print(f"spans dropped by the gateway: {dropped['running']} with the collector running, "
          f"{dropped['stopped']} with it stopped")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", default="qcstack-bench-otel")
    parser.add_argument("--egress-subnet", type=IPv4Network, default=IPv4Network("10.231.243.0/28"))
    parser.add_argument("--gateway-port", type=int, default=18075)
    parser.add_argument("--calls", type=int, default=200, help="calls per state, c and round")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    settings = Settings(gateway=BENCH_GATEWAY_SETTINGS)
    secrets = Path(tempfile.mkdtemp(prefix="qcstack-bench-secrets-"))
    os.chmod(secrets, 0o700)
    project = test_project(
        settings,
        args.project,
        [],
        egress_subnet=args.egress_subnet,
        gateway_port=args.gateway_port,
        secrets_dir=secrets,
    )
    try:
        prepare_test_secrets(settings, secrets)
        print(f"==> clean start of compose project {project.name}", file=sys.stderr)
        project.down(remove_volumes=True)
        project.up(wait_timeout=240)
        print("==> measuring: collector running, then stopped, in turns", file=sys.stderr)
        result = measure(settings, project.name, args.calls, args.rounds)
    except (BenchError, CommandError, ValueError) as error:
        print(f"telemetry off: {error}", file=sys.stderr)
        return 1
    finally:
        project.down(remove_volumes=True)
        shutil.rmtree(secrets, ignore_errors=True)
    report(result)
    print(json.dumps({"dropped": result["dropped"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
