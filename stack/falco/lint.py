"""`qcstack falco lint`: checks our rules file and falco.yaml beyond what Falco's schemas check."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from stack.controls import CONTROLS, CONTROLS_BY_ID
from stack.falco.condition import And, Check, ConditionError, MacroRef, Node, Not, walk
from stack.falco.fields import FIELDS_FILE, condition_fields, is_known, load_fields, output_fields
from stack.falco.images import compose_repositories, with_image_lists
from stack.falco.rules import (
    OUR_RULES,
    PRIORITIES,
    STABLE_RULES,
    Rule,
    RuleSet,
    RulesFileError,
    load_rules,
)
from stack.falco.schema import CONFIG_SCHEMA, FALCO_CONFIG, RULE_SCHEMA, schema_errors
from stack.settings import REPO_ROOT

SCENARIOS_DIR = REPO_ROOT / "falco" / "scenarios"
COMPOSE_FILE = REPO_ROOT / "compose" / "compose.yaml"
# What means compromise a prevention control should have made impossible is CRITICAL; write
# attempts and listeners can be benign misconfiguration (the shared decision of issue 7).
WARNING_CONTROLS = frozenset({"DET-02", "DET-07"})
# An unquoted list item shaped like a list name: Falco would silently read an undefined one as a
# literal string, so the linter asks for it to be defined (or quoted).
_LIST_NAME = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)+$")
_REPOSITORY = re.compile(r"\bqcstack/[a-z0-9][a-z0-9._-]*")


@dataclass(frozen=True)
class Problem:
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass(frozen=True)
class LintInputs:
    """The files the linter reads; the repository's by default, others in tests."""

    rules: Path = OUR_RULES
    stable: Path = STABLE_RULES
    config: Path = FALCO_CONFIG
    compose: Path = COMPOSE_FILE
    scenarios: Path = SCENARIOS_DIR
    fields: Path = FIELDS_FILE


def lint(inputs: LintInputs = LintInputs()) -> list[Problem]:
    """Every problem found; an empty list means the rules and config are fit to ship."""
    problems = [Problem(inputs.rules.name, m) for m in schema_errors(inputs.rules, RULE_SCHEMA)]
    problems += [
        Problem(inputs.config.name, m) for m in schema_errors(inputs.config, CONFIG_SCHEMA)
    ]
    problems += list(config_problems(inputs.config))
    try:
        ruleset = load_rules([inputs.stable, inputs.rules])
    except (RulesFileError, OSError) as error:
        return [*problems, Problem(inputs.rules.name, str(error))]
    known_fields = load_fields(inputs.fields)
    ours = [rule for rule in ruleset.rules.values() if rule.path == inputs.rules]
    macros = [macro for macro in ruleset.macros.values() if macro.path == inputs.rules]
    for what, condition in [
        *((f"rule {rule.name!r}", rule.condition) for rule in ours),
        *((f"macro {macro.name!r}", macro.condition) for macro in macros),
    ]:
        problems += condition_problems(what, condition, ruleset, known_fields)
    for rule in ours:
        problems += [Problem(f"rule {rule.name!r}", m) for m in rule_problems(rule, ruleset)]
        problems += [
            Problem(f"rule {rule.name!r}", f"output prints unknown field {name!r}")
            for name in output_fields(rule.output)
            if not is_known(name, known_fields)
        ]
        scenario = inputs.scenarios / f"{rule.slug}.py"
        if not scenario.is_file():
            problems.append(
                Problem(f"rule {rule.name!r}", f"no trigger scenario {display(scenario)}")
            )
    problems += list(list_problems(inputs.rules, ruleset))
    problems += list(control_problems(ours))
    problems += list(image_problems(inputs.rules, inputs.compose))
    return problems


def display(path: Path) -> str:
    """The path relative to the repository where it lies inside it."""
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def condition_problems(
    what: str, condition: str, ruleset: RuleSet, known_fields: frozenset[str]
) -> list[Problem]:
    try:
        node = ruleset.parsed(condition)
    except ConditionError as error:
        return [Problem(what, f"condition does not parse: {error}")]
    problems = [
        Problem(what, f"uses macro {name!r}, which neither our rules nor the stable ones define")
        for name in sorted(set(macro_refs(node)))
        if name not in ruleset.macros
    ]
    problems += [
        Problem(what, f"uses list {name!r}, which is not defined (quote it if it is a value)")
        for name in sorted(set(list_refs(node)))
        if name not in ruleset.lists
    ]
    problems += [
        Problem(what, f"uses unknown field {name!r} (not in falco/fields.txt)")
        for name in sorted(set(condition_fields(node)))
        if not is_known(name, known_fields)
    ]
    return problems


def macro_refs(node: Node) -> Iterator[str]:
    yield from (found.name for found in walk(node) if isinstance(found, MacroRef))


def list_refs(node: Node) -> Iterator[str]:
    """Unquoted list items shaped like list names (Falco expands them when the list exists)."""
    for found in walk(node):
        if isinstance(found, Check) and isinstance(found.operand, tuple):
            for item in found.operand:
                if not item.quoted and _LIST_NAME.match(item.text):
                    yield item.text


def rule_problems(rule: Rule, ruleset: RuleSet) -> Iterator[str]:
    if not rule.name.startswith("qcstack "):
        yield 'the name does not start with "qcstack "'
    if not rule.desc:
        yield "no desc"
    elif "limit" not in rule.desc.lower():
        yield "desc does not say its limits (no 'Limits:' part)"
    if not rule.output:
        yield "no output"
    for name in ("container.name", "container.image.repository", "proc.exepath"):
        if f"%{name}" not in rule.output:
            yield f"output lacks %{name}"
    if rule.priority.upper() not in PRIORITIES:
        yield f"priority {rule.priority!r} is not one of Falco's {', '.join(PRIORITIES)}"
    elif rule.control is not None:
        expected = "WARNING" if rule.control in WARNING_CONTROLS else "CRITICAL"
        if rule.priority.upper() != expected:
            yield f"priority {rule.priority} but {rule.control}'s rules are {expected}"
    if "qcstack" not in rule.tags:
        yield 'tags lack "qcstack" (the responder acts only on qcstack alerts)'
    if rule.control is None:
        yield "tags name no DET control ID (DET-01 ...)"
    elif rule.control not in CONTROLS_BY_ID:
        yield f"tag {rule.control} names no control in stack/controls.py"
    if not any(tag.startswith("mitre_") for tag in rule.tags):
        yield "tags name no MITRE ATT&CK tactic (mitre_...)"
    tuning = f"qcstack_{rule.slug}_tuning"
    if not rule.exceptions and not has_tuning(ruleset, rule.condition, tuning):
        yield f"neither an exceptions block nor `and not {tuning}` at the top of its condition"


def has_tuning(ruleset: RuleSet, condition: str, tuning: str) -> bool:
    try:
        node = ruleset.parsed(condition)
    except ConditionError:
        return False
    operands = node.operands if isinstance(node, And) else (node,)
    return Not(MacroRef(tuning)) in operands and tuning in ruleset.macros


def list_problems(rules_path: Path, ruleset: RuleSet) -> Iterator[Problem]:
    """Items of our lists shaped like list names that name no list."""
    document: Any = yaml.safe_load(rules_path.read_text(encoding="utf-8"))
    for item in document if isinstance(document, list) else ():
        if isinstance(item, dict) and "list" in item:
            for entry in item.get("items") or ():
                text = str(entry)
                if (
                    _LIST_NAME.match(text)
                    and text.startswith("qcstack_")
                    and text not in ruleset.lists
                ):
                    yield Problem(f"list {item['list']!r}", f"item {text!r} names no list")


def control_problems(ours: list[Rule]) -> Iterator[Problem]:
    """Each DET control has rules, and its registry entry names each of them."""
    for control in CONTROLS:
        if not control.id.startswith("DET-") or control.id == "DET-08":
            continue
        rules = [rule for rule in ours if rule.control == control.id]
        if not rules:
            yield Problem(control.id, "no rule carries this control's tag")
        for rule in rules:
            if f'"{rule.name}"' not in control.enforced:
                yield Problem(
                    control.id, f"stack/controls.py's enforced does not name {rule.name!r}"
                )


def image_problems(rules_path: Path, compose_file: Path) -> Iterator[Problem]:
    text = rules_path.read_text(encoding="utf-8")
    try:
        current = with_image_lists(text, compose_file) == text
    except ValueError as error:
        yield Problem(rules_path.name, str(error))
        return
    if not current:
        yield Problem(
            rules_path.name,
            "the image lists differ from compose/compose.yaml: "
            "run `bin/qcstack falco --write-rules`",
        )
    repositories = set(compose_repositories(compose_file).values())
    for repository in sorted(set(_REPOSITORY.findall(text)) - repositories):
        yield Problem(rules_path.name, f"names image {repository!r}, which compose does not have")


def config_problems(config_path: Path) -> Iterator[Problem]:
    """falco.yaml's choices the stack depends on (the schema checks only their shape)."""
    where = config_path.name
    try:
        config: Any = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        yield Problem(where, f"cannot be read: {error}")
        return
    if not isinstance(config, dict):
        yield Problem(where, "is not a YAML mapping")
        return
    files = [str(path) for path in config.get("rules_files") or ()]
    names = [Path(path).name for path in files]
    if "falco_rules.yaml" not in names or OUR_RULES.name not in names:
        yield Problem(where, f"rules_files must load falco_rules.yaml and {OUR_RULES.name}")
    elif names.index("falco_rules.yaml") > names.index(OUR_RULES.name):
        yield Problem(where, f"rules_files must load falco_rules.yaml before {OUR_RULES.name}")
    if (config.get("engine") or {}).get("kind") != "modern_ebpf":
        yield Problem(where, "engine.kind must be modern_ebpf")
    if config.get("json_output") is not True:
        yield Problem(where, "json_output must be true (the responder reads JSON alerts)")
    http = config.get("http_output") or {}
    if http.get("enabled") is not True or not str(http.get("url", "")).endswith("/alerts"):
        yield Problem(where, "http_output must be enabled and post to the responder's /alerts")
    plugins = {plugin.get("name") for plugin in config.get("plugins") or ()}
    if "container" not in (config.get("load_plugins") or ()) or "container" not in plugins:
        yield Problem(where, "the container plugin must be configured and in load_plugins")
    if str(config.get("priority", "")).lower() != "warning":
        yield Problem(where, "priority must be warning (DET-02 and DET-07 alert at WARNING)")
