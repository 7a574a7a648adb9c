"""Loads Falco rules files (ours after the stable ones): rules, macros, lists; evaluates them."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from stack.falco.condition import ConditionError, Node, parse
from stack.falco.evaluate import Evaluator
from stack.settings import REPO_ROOT

OUR_RULES = REPO_ROOT / "falco" / "qcstack_rules.yaml"
# Falco's stable default rules (falcosecurity/rules), the macros and lists ours build on. Falco's
# package installs them as /etc/falco/falco_rules.yaml; here they are the shared reference copy.
STABLE_RULES = REPO_ROOT.parent / "shared" / "reference" / "falco_rules-stable.yaml"
DEFAULT_PATHS = (STABLE_RULES, OUR_RULES)
CONTROL_TAG = re.compile(r"^DET-\d\d$")
PRIORITIES = (
    "EMERGENCY",
    "ALERT",
    "CRITICAL",
    "ERROR",
    "WARNING",
    "NOTICE",
    "INFORMATIONAL",
    "INFO",
    "DEBUG",
)


class RulesFileError(ValueError):
    """A rules file that cannot be loaded; the message names the file and the item."""


@dataclass(frozen=True)
class Rule:
    """One rule as loaded, with the DET control ID its tags name (None if none does)."""

    name: str
    condition: str
    priority: str
    tags: tuple[str, ...]
    desc: str
    output: str
    control: str | None
    path: Path
    enabled: bool = True
    exceptions: tuple[Mapping[str, Any], ...] = ()

    @property
    def slug(self) -> str:
        """The rule's scenario name: no "qcstack " prefix, lower case, non-alphanumerics -> _."""
        return slug(self.name)


@dataclass(frozen=True)
class Macro:
    name: str
    condition: str
    path: Path


@dataclass(frozen=True)
class RuleSet:
    """Every rule, macro and list of the files loaded; a later definition replaces the earlier."""

    rules: Mapping[str, Rule]
    macros: Mapping[str, Macro]
    lists: Mapping[str, tuple[str, ...]]
    texts: Mapping[Path, str]
    _parsed: dict[str, Node] = field(default_factory=dict, repr=False, compare=False)

    def parsed(self, condition: str) -> Node:
        if condition not in self._parsed:
            self._parsed[condition] = parse(condition)
        return self._parsed[condition]

    def evaluator(self) -> Evaluator:
        macros = {name: self.parsed(macro.condition) for name, macro in self.macros.items()}
        return Evaluator(macros, self.lists)

    def matches(self, rule_name: str, event: Mapping[str, object]) -> bool:
        """Whether the rule's condition holds for an event given as field -> value."""
        if rule_name not in self.rules:
            raise KeyError(f"no rule named {rule_name!r}; known: {sorted(self.rules)}")
        return self.evaluator().matches(self.parsed(self.rules[rule_name].condition), event)

    def matches_condition(self, condition: str, event: Mapping[str, object]) -> bool:
        """Whether a condition (macros and lists from this set) holds for an event."""
        return self.evaluator().matches(self.parsed(condition), event)

    def for_control(self, control_id: str) -> tuple[Rule, ...]:
        return tuple(rule for rule in self.rules.values() if rule.control == control_id)

    def without_control(self, control_id: str) -> str:
        """The text of the rules file holding the control's rules, with those rules cut out."""
        rules = self.for_control(control_id)
        if not rules:
            raise KeyError(f"no rule carries the tag {control_id!r}")
        paths = {rule.path for rule in rules}
        if len(paths) != 1:
            raise ValueError(f"{control_id}'s rules are spread over {sorted(map(str, paths))}")
        path = paths.pop()
        return remove_rules(self.texts[path], {rule.name for rule in rules})


def slug(rule_name: str) -> str:
    name = rule_name.removeprefix("qcstack ").lower()
    return re.sub(r"[^a-z0-9]+", "_", name).strip("_")


def load_rules(paths: Iterable[Path] = DEFAULT_PATHS) -> RuleSet:
    """The rule set of these files in Falco's load order: a later definition replaces an earlier
    one, and an item with `override:` (or the older `append: true`) changes the earlier one."""
    raw: dict[tuple[str, str], tuple[Path, dict[str, Any]]] = {}
    texts: dict[Path, str] = {}
    for path in paths:
        text = path.read_text(encoding="utf-8")
        texts[path] = text
        for item in read_items(path, text):
            kind = next((k for k in ("rule", "macro", "list") if k in item), None)
            if kind is None:
                continue
            key = (kind, str(item[kind]))
            if "override" in item or item.get("append"):
                if key not in raw:
                    raise RulesFileError(
                        f"{path}: {kind} {key[1]!r} changes one not defined before"
                    )
                origin, earlier = raw[key]
                raw[key] = (origin, merged(earlier, item))
            else:
                raw[key] = (path, item)
    rules: dict[str, Rule] = {}
    macros: dict[str, Macro] = {}
    lists: dict[str, tuple[str, ...]] = {}
    for (what, name), (path, item) in raw.items():
        if what == "rule":
            rules[name] = rule_from(path, item)
        elif what == "macro":
            macros[name] = Macro(name, require(path, item, "condition"), path)
        else:
            lists[name] = expand_list(path, item, lists)
    return RuleSet(
        MappingProxyType(rules), MappingProxyType(macros), MappingProxyType(lists), texts
    )


def merged(earlier: Mapping[str, Any], change: Mapping[str, Any]) -> dict[str, Any]:
    """An item changed as Falco changes it: each key appended to or replaced."""
    modes = change.get("override") or {}
    result = dict(earlier)
    for key, value in change.items():
        if key in ("rule", "macro", "list", "override", "append"):
            continue
        mode = modes.get(key, "append" if change.get("append") else "replace")
        if mode == "append" and isinstance(value, list):
            result[key] = [*(result.get(key) or ()), *value]
        elif mode == "append":
            result[key] = f"{result.get(key, '')} {value}"
        else:
            result[key] = value
    return result


def read_items(path: Path, text: str) -> list[dict[str, Any]]:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise RulesFileError(f"{path}: not valid YAML: {error}") from error
    if not isinstance(document, list):
        raise RulesFileError(f"{path}: a rules file is a YAML list of rules, macros and lists")
    for index, item in enumerate(document):
        if not isinstance(item, dict):
            raise RulesFileError(f"{path}: item {index} is not a mapping: {item!r}")
        if sum(key in item for key in ("rule", "macro", "list")) > 1:
            raise RulesFileError(f"{path}: item {index} is more than one of rule/macro/list")
    return document


def require(path: Path, item: Mapping[str, Any], key: str) -> Any:
    name = item.get("rule") or item.get("macro") or item.get("list")
    if key not in item:
        raise RulesFileError(f"{path}: {name!r} has no {key!r}")
    return item[key]


def rule_from(path: Path, item: Mapping[str, Any]) -> Rule:
    tags = tuple(str(tag) for tag in item.get("tags") or ())
    controls = [tag for tag in tags if CONTROL_TAG.match(tag)]
    condition = require(path, item, "condition")
    if not isinstance(condition, str):
        raise RulesFileError(f"{path}: rule {item['rule']!r}: condition is not a string")
    return Rule(
        name=item["rule"],
        condition=condition,
        priority=str(item.get("priority", "")),
        tags=tags,
        desc=str(item.get("desc", "")).strip(),
        output=str(item.get("output", "")).strip(),
        control=controls[0] if controls else None,
        path=path,
        enabled=bool(item.get("enabled", True)),
        exceptions=tuple(item.get("exceptions") or ()),
    )


def expand_list(
    path: Path, item: Mapping[str, Any], known: Mapping[str, tuple[str, ...]]
) -> tuple[str, ...]:
    """A list's items as Falco reads them: names of earlier lists expanded, quotes removed."""
    items: list[str] = []
    for entry in item.get("items") or ():
        text = str(entry)
        if text in known:
            items.extend(known[text])
        elif len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
            items.append(text[1:-1])
        else:
            items.append(text)
    return tuple(items)


def parse_errors(ruleset: RuleSet) -> list[str]:
    """One message per rule or macro whose condition does not parse."""
    errors = []
    named: Sequence[tuple[str, str]] = [
        *((f"rule {rule.name!r}", rule.condition) for rule in ruleset.rules.values()),
        *((f"macro {macro.name!r}", macro.condition) for macro in ruleset.macros.values()),
    ]
    for what, condition in named:
        try:
            ruleset.parsed(condition)
        except ConditionError as error:
            errors.append(f"{what}: condition does not parse: {error}")
    return errors


_TOP_ITEM = re.compile(r"^- ")


def remove_rules(text: str, names: set[str]) -> str:
    """The rules file text without the top-level `- rule:` items named (comments kept)."""
    lines = text.splitlines(keepends=True)
    starts = [index for index, line in enumerate(lines) if _TOP_ITEM.match(line)]
    kept = list(lines)
    removed = set()
    for position, start in enumerate(starts):
        end = starts[position + 1] if position + 1 < len(starts) else len(lines)
        item = yaml.safe_load("".join(lines[start:end]))
        name = item[0].get("rule") if isinstance(item, list) and item else None
        if name in names:
            # Stop before the comment lines and blank lines that lead into the next item.
            while end > start + 1 and (
                not lines[end - 1].strip() or lines[end - 1].startswith("#")
            ):
                end -= 1
            for index in range(start, end):
                kept[index] = ""
            removed.add(name)
    if removed != names:
        raise KeyError(f"rules not found as top-level items: {sorted(names - removed)}")
    return "".join(kept)
