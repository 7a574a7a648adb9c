"""The control registry is complete, every control is proven twice, and the README is current."""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

import pytest

from stack.controls import CONTROLS, CONTROLS_BY_ID, THREATS, Control
from stack.readme import README_PATH, with_table

REPO = Path(__file__).resolve().parent.parent
TEST_TREES = (REPO / "infra_tests", REPO / "tests")
CHECKS = ("config", "behaviour")


def control_marks() -> dict[str, set[str]]:
    """Control ID -> the checks ('config', 'behaviour') some test proves, read from the source."""
    marks: dict[str, set[str]] = defaultdict(set)
    for tree in TEST_TREES:
        for path in tree.glob("test_*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "control"
                ):
                    args = [a.value for a in node.args if isinstance(a, ast.Constant)]
                    assert len(args) == 2, f"{path}:{node.lineno}: control(ID, check) expected"
                    marks[str(args[0])].add(str(args[1]))
    return marks


def test_control_ids_are_unique_and_well_formed() -> None:
    ids = [control.id for control in CONTROLS]
    assert len(ids) == len(set(ids))
    for control_id in ids:
        assert re.fullmatch(r"(IMG|RUN|NET|SEC|GW|OBS|DET|HOST)-\d{2}", control_id), control_id


@pytest.mark.parametrize("control", CONTROLS, ids=lambda c: c.id)
def test_control_answers_a_threat_from_the_threat_model(control: Control) -> None:
    assert control.threat in THREATS


@pytest.mark.parametrize("control", CONTROLS, ids=lambda c: c.id)
def test_external_references_are_versioned_tags(control: Control) -> None:
    for ref in control.refs:
        assert re.fullmatch(r"[a-z-]+-\d+\.\d+\.\d+:[0-9.]+", ref), ref


@pytest.mark.parametrize("control", CONTROLS, ids=lambda c: c.id)
@pytest.mark.parametrize("check", CHECKS)
def test_every_control_has_a_config_and_a_behaviour_test(control: Control, check: str) -> None:
    assert check in control_marks().get(control.id, set()), f"{control.id} has no {check} test"


def test_no_test_names_an_unknown_control_or_check() -> None:
    for control_id, checks in control_marks().items():
        assert control_id in CONTROLS_BY_ID, f"tests name unknown control {control_id}"
        assert checks <= set(CHECKS), f"{control_id}: unknown check in {checks}"


def test_readme_threat_model_table_is_current() -> None:
    readme = README_PATH.read_text(encoding="utf-8")
    assert with_table(readme) == readme, "run `make controls` to regenerate the README table"


def test_readme_table_lists_every_control() -> None:
    readme = README_PATH.read_text(encoding="utf-8")
    for control in CONTROLS:
        assert f"| {control.id} | {control.title} |" in readme
