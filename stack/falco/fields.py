"""The Falco fields qcstack's rules may use (falco/fields.txt), and the fields a rule does use."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from stack.falco.condition import Check, Field, Node, walk
from stack.settings import REPO_ROOT

FIELDS_FILE = REPO_ROOT / "falco" / "fields.txt"
_OUTPUT_FIELD = re.compile(r"%([A-Za-z_][A-Za-z0-9_.]*)(?:\[[^\]]*\])?")


def load_fields(path: Path = FIELDS_FILE) -> frozenset[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip() for line in lines if line.strip() and not line.startswith("#"))


def is_known(name: str, known: frozenset[str]) -> bool:
    """Known as listed, or under a listed `prefix.*` (evt.arg.* stands for any argument)."""
    if name in known:
        return True
    return any(entry.endswith(".*") and name.startswith(entry[:-1]) for entry in known)


def condition_fields(node: Node) -> Iterator[str]:
    """The field names a parsed condition compares (macros not expanded)."""
    for check in walk(node):
        if isinstance(check, Check):
            yield check.field.name
            if isinstance(check.operand, Field):
                yield check.operand.name


def output_fields(output: str) -> Iterator[str]:
    """The field names an output string prints (`%proc.aname[2]` -> proc.aname)."""
    for match in _OUTPUT_FIELD.finditer(output):
        yield match.group(1)
