"""The mutation check: switch one control off through a compose override, expect its tests red."""

from __future__ import annotations

import functools
import json
import queue
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import yaml

from stack.compose import ComposeProject
from stack.controls import CONTROLS, Control, Override, Reset
from stack.egress import render_policy
from stack.falco.rules import OUR_RULES, RuleSet, load_rules
from stack.process import DOCKER_BUILD_ENVIRONMENT, CommandError, run, step
from stack.settings import Settings
from stack.suites import lane_settings, mutant_project_name, pytest_command, test_project
from stack.testdata import CANARY_API_TOKEN


class _OverrideDumper(yaml.SafeDumper):
    """Writes compose's !reset and !override tags."""


def _represent_reset(dumper: yaml.SafeDumper, _: Reset) -> yaml.Node:
    return dumper.represent_scalar("!reset", "")


def _represent_override(dumper: yaml.SafeDumper, data: Override) -> yaml.Node:
    node = dumper.represent_data(data.value)
    node.tag = "!override"
    return node


_OverrideDumper.add_representer(Reset, _represent_reset)
_OverrideDumper.add_representer(Override, _represent_override)


def _fill(value: Any, values: dict[str, str]) -> Any:
    """Fills {placeholders} in an override with this run's values."""
    if isinstance(value, str):
        for key, replacement in values.items():
            value = value.replace("{" + key + "}", replacement)
        return value
    if isinstance(value, list):
        return [_fill(v, values) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, values) for k, v in value.items()}
    if isinstance(value, Override):
        return Override(_fill(value.value, values))
    return value


WEAKENED_DOCKERFILE = """\
ARG BASE_IMAGE
ARG IMAGE
FROM ${{BASE_IMAGE}} AS tools
RUN cp /bin/dash /tmp/setuid-dash && chmod 4755 /tmp/setuid-dash
FROM ${{IMAGE}}
{steps}
"""


def weakened_image_tag(control: Control) -> str:
    return f"qcstack-test/weakened:{control.id.lower()}"


def build_weakened_image(control: Control, settings: Settings, base: str) -> None:
    """Builds a copy of qc-mcp's image with `control` switched off."""
    assert control.weaken_image is not None
    context = mutation_dir(settings, control)
    context.mkdir(parents=True, exist_ok=True)
    (context / "Dockerfile").write_text(WEAKENED_DOCKERFILE.format(steps=control.weaken_image))
    run(
        ["docker", "build", "-q", "--build-arg", f"BASE_IMAGE={base}",
         "--build-arg", f"IMAGE={settings.image('qc-mcp')}", "-t", weakened_image_tag(control),
         str(context)],
        env=DOCKER_BUILD_ENVIRONMENT, capture=True,
    )  # fmt: skip


def mutation_dir(settings: Settings, control: Control) -> Path:
    return settings.build_dir / "mutations" / control.id


def placeholder_values(settings: Settings, control: Control) -> dict[str, str]:
    """What the {placeholders} of a control's override stand for in this run."""
    subnet = settings.test_egress_subnet
    return {
        "canary_token": CANARY_API_TOKEN,
        "repo_root": str(settings.repo_root),
        "mutation_dir": str(mutation_dir(settings, control)),
        "dns_canary_address": str(subnet[13]),
        "policy_for_any_client": render_policy(
            settings.egress_destinations, IPv4Network("0.0.0.0/0")
        ),
        "policy_allow_all": render_policy(settings.egress_destinations, subnet)
        + "http_access allow all\n",
        "collector_config_without_redaction": collector_config_without_redaction(settings),
    }


def collector_config_without_redaction(settings: Settings) -> str:
    """otel/collector.yaml with the redaction processor taken out of every pipeline (OBS-02's
    mutant): what a deployment that forgot it would run."""
    config = yaml.safe_load((settings.repo_root / "otel" / "collector.yaml").read_text())
    for pipeline in config["service"]["pipelines"].values():
        pipeline["processors"] = [p for p in pipeline["processors"] if p != "redaction"]
    return yaml.safe_dump(config, sort_keys=False)


def render_override(control: Control, settings: Settings) -> str:
    """The compose override file that switches `control` off."""
    document: dict[str, Any] = {}
    if control.weaken_image is not None:
        document["services"] = {"qc-mcp": {"image": weakened_image_tag(control)}}
    if control.disable is not None:
        document = _fill(control.disable, placeholder_values(settings, control))
    return yaml.dump(document, Dumper=_OverrideDumper, sort_keys=False)


def write_mutation_files(settings: Settings, control: Control) -> None:
    values = placeholder_values(settings, control)
    folder = mutation_dir(settings, control)
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in control.disable_files.items():
        path = folder / name
        path.write_text(_fill(content, values), encoding="utf-8")
        path.chmod(0o444)


def mutable_controls() -> list[Control]:
    """Controls switched off in the stack itself: a compose override or a weakened image."""
    return [c for c in CONTROLS if c.disable is not None or c.weaken_image is not None]


def rules_controls() -> list[Control]:
    """Controls switched off in the Falco rules file: their tests take it (--falco-rules)."""
    return [c for c in CONTROLS if c.falco_rules]


@dataclass(frozen=True)
class MutationResult:
    control: str
    red: dict[str, int]
    total: dict[str, int]
    error: str = ""

    @property
    def covered(self) -> bool:
        return all(self.red.get(check, 0) > 0 for check in ("config", "behaviour"))

    def summary(self) -> str:
        if self.error:
            return f"{self.control}: could not run ({self.error})"
        parts = [
            f"{check} {self.red.get(check, 0)}/{self.total.get(check, 0)} red"
            for check in ("config", "behaviour")
        ]
        verdict = "caught" if self.covered else "NOT FULLY CAUGHT"
        return f"{self.control}: {', '.join(parts)} -> {verdict}"


def read_report(path: Path, control_id: str) -> tuple[dict[str, int], dict[str, int]]:
    red: dict[str, int] = {}
    total: dict[str, int] = {}
    for entry in json.loads(path.read_text()):
        for marked, check in entry["controls"]:
            if marked != control_id:
                continue
            total[check] = total.get(check, 0) + 1
            if entry["outcome"] == "failed":
                red[check] = red.get(check, 0) + 1
    return red, total


def mutation_project(settings: Settings, control: Control) -> ComposeProject:
    folder = settings.build_dir / "mutations"
    folder.mkdir(parents=True, exist_ok=True)
    override = folder / f"{control.id}.yaml"
    override.write_text(render_override(control, settings))
    write_mutation_files(settings, control)
    return test_project(settings, mutant_project_name(settings), (override,))


def run_control_tests(
    settings: Settings, lane: int, project: str, control: Control, *options: str
) -> MutationResult:
    """Runs the infra suites' tests of `control` against `project`, the stack of mutation lane
    `lane`; counts the red ones."""
    report = settings.build_dir / "mutations" / f"{control.id}.json"
    report.unlink(missing_ok=True)
    run(
        pytest_command(
            settings,
            project,
            "-q",
            "--no-header",
            f"--mutation-lane={lane}",
            *options,
            f"--control={control.id}",
            f"--control-report={report}",
            str(settings.repo_root / "infra_tests"),
        ),
        check=False,
        # Red tests are the point here; their output would read as a failed run.
        capture=True,
    )
    red, total = read_report(report, control.id)
    return MutationResult(control.id, red, total)


def check_control(settings: Settings, control: Control, base: str, lane: int = 0) -> MutationResult:
    """Runs the control's tests against a stack, in mutation lane `lane`, with the control
    switched off."""
    settings = lane_settings(settings, lane)
    project = mutation_project(settings, control)
    try:
        if control.weaken_image is not None:
            build_weakened_image(control, settings, base)
        project.down(remove_volumes=True)
        project.up()
        return run_control_tests(settings, lane, project.name, control)
    except CommandError as error:
        return MutationResult(control.id, {}, {}, str(error).splitlines()[0])
    finally:
        project.down(remove_volumes=True)


def write_rules_mutant(settings: Settings, control: Control, rules: RuleSet) -> Path:
    """The rules file with `control`'s rules cut out, in its mutation folder; returns its path."""
    folder = mutation_dir(settings, control)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / OUR_RULES.name
    path.write_text(rules.without_control(control.id), encoding="utf-8")
    return path


def check_rules_controls(
    settings: Settings, controls: list[Control], lane: int = 0
) -> list[MutationResult]:
    """Runs each control's tests with its rules cut out of the rules file. These mutants change
    nothing in the stack, so one test stack (in mutation lane `lane`), brought up once, serves
    them all."""
    settings = lane_settings(settings, lane)
    rules = load_rules()
    project = test_project(settings, mutant_project_name(settings))
    results: list[MutationResult] = []
    try:
        project.down(remove_volumes=True)
        project.up()
        for control in controls:
            try:
                mutant = write_rules_mutant(settings, control, rules)
            except (KeyError, ValueError) as error:
                results.append(MutationResult(control.id, {}, {}, str(error)))
                continue
            results.append(
                run_control_tests(settings, lane, project.name, control, f"--falco-rules={mutant}")
            )
    except CommandError as error:
        done = {result.control for result in results}
        reason = str(error).splitlines()[0]
        results += [MutationResult(c.id, {}, {}, reason) for c in controls if c.id not in done]
    finally:
        project.down(remove_volumes=True)
    return results


def check_in_lanes(
    settings: Settings, in_stack: list[Control], in_rules: list[Control], base: str
) -> list[MutationResult]:
    """Every mutant, settings.mutation_lanes of them side by side, each job in a free lane: the
    Falco rule controls first (one job, one stack: the longest), then a stack per control."""
    jobs: list[tuple[str, Callable[[int], list[MutationResult]]]] = []
    if in_rules:
        ids = ", ".join(c.id for c in in_rules)
        jobs.append(
            (
                f"{ids} switched off in the Falco rules file, each in turn, on one test stack",
                functools.partial(check_rules_controls, settings, in_rules),
            )
        )
    for control in in_stack:
        check = functools.partial(check_control, settings, control, base)
        jobs.append((f"{control.id} switched off: {control.title}", _as_list(check)))
    free: queue.SimpleQueue[int] = queue.SimpleQueue()
    for lane in range(settings.mutation_lanes):
        free.put(lane)

    def run_job(job: tuple[str, Callable[[int], list[MutationResult]]]) -> list[MutationResult]:
        title, check = job
        lane = free.get()
        try:
            with step(f"[lane {lane}] {title}"):
                return check(lane)
        finally:
            free.put(lane)

    with ThreadPoolExecutor(max_workers=settings.mutation_lanes) as pool:
        return [result for results in pool.map(run_job, jobs) for result in results]


def _as_list(check: Callable[[int], MutationResult]) -> Callable[[int], list[MutationResult]]:
    return lambda lane: [check(lane)]
