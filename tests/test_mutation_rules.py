"""The mutation check switches DET controls off in the Falco rules file, not in the stack."""

from __future__ import annotations

from pathlib import Path

import pytest

from stack.controls import CONTROLS_BY_ID
from stack.falco.rules import OUR_RULES, STABLE_RULES, load_rules
from stack.mutation import mutable_controls, rules_controls, write_rules_mutant
from stack.settings import Settings


def test_every_det_control_is_switched_off_in_the_rules_file_alone() -> None:
    ids = [control.id for control in rules_controls()]
    assert ids == [f"DET-0{n}" for n in range(1, 8)]
    assert not set(ids) & {control.id for control in mutable_controls()}


@pytest.mark.parametrize("control_id", [f"DET-0{n}" for n in range(1, 8)])
def test_rules_mutant_lacks_the_controls_rules_and_keeps_the_others(
    tmp_path: Path, control_id: str
) -> None:
    rules = load_rules([STABLE_RULES, OUR_RULES])
    settings = Settings(build_dir=tmp_path)
    mutant = write_rules_mutant(settings, CONTROLS_BY_ID[control_id], rules)
    assert mutant.parent == tmp_path / "mutations" / control_id
    cut = load_rules([STABLE_RULES, mutant])
    ours = {name for name, rule in rules.rules.items() if rule.control}
    removed = {rule.name for rule in rules.for_control(control_id)}
    assert removed
    assert {name for name, rule in cut.rules.items() if rule.control} == ours - removed


def test_mutation_check_refuses_a_control_it_cannot_switch_off() -> None:
    from stack.cli import main

    assert main(["mutation-check", "--control", "HOST-01"]) == 1
    assert main(["mutation-check", "--control", "NOPE-01"]) == 1
