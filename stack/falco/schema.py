"""Validates rules files and falco.yaml against the JSON Schemas Falco 0.44 itself applies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from stack.settings import REPO_ROOT

REFERENCE = REPO_ROOT.parent / "shared" / "reference"
RULE_SCHEMA = REFERENCE / "falco-0.44-rule-schema.json"
CONFIG_SCHEMA = REFERENCE / "falco-0.44-config-schema.json"
FALCO_CONFIG = REPO_ROOT / "falco" / "falco.yaml"


def schema_errors(document_path: Path, schema_path: Path) -> list[str]:
    """One message per schema violation, naming the file and the path inside it."""
    try:
        document: Any = yaml.safe_load(document_path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        return [f"{document_path}: not valid YAML: {error}"]
    schema = json.loads(schema_path.read_text(encoding="utf-8"))
    validator = jsonschema.Draft6Validator(schema, format_checker=jsonschema.FormatChecker())
    errors = sorted(validator.iter_errors(document), key=lambda error: list(error.absolute_path))
    return [f"{document_path}: {where(document, error)}: {error.message}" for error in errors]


def where(document: Any, error: jsonschema.ValidationError) -> str:
    """The failing item, by its rule/macro/list name where there is one."""
    path = list(error.absolute_path)
    if path and isinstance(path[0], int) and isinstance(document, list):
        item = document[path[0]]
        if isinstance(item, dict):
            for kind in ("rule", "macro", "list"):
                if kind in item:
                    rest = "/".join(str(part) for part in path[1:])
                    return f"{kind} {item[kind]!r}" + (f" ({rest})" if rest else "")
    return "/".join(str(part) for part in path) or "(top level)"
