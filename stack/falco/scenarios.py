"""The trigger scenarios beside the rules: one script per rule, read without running it."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

from stack.falco.rules import slug as rule_slug

SCENARIOS_DIR = Path(__file__).resolve().parents[2] / "falco" / "scenarios"
PRELUDE = "_prelude.py"
RUNS = ("container", "host")
"""Where a scenario runs: inside its service's container (python3 -c), or on the Docker host
for a service with no interpreter (it reaches the container with `docker exec`)."""


@dataclass(frozen=True)
class Scenario:
    """One trigger scenario: the rule it triggers, the service it acts in, and its script."""

    slug: str
    control: str
    rule: str
    service: str
    runs: str
    path: Path

    def source(self) -> str:
        """What runs: the shared prelude, then the scenario (its `__main__` block included)."""
        prelude = (self.path.parent / PRELUDE).read_text(encoding="utf-8")
        return prelude + "\n" + self.path.read_text(encoding="utf-8")


def _constants(path: Path) -> dict[str, str]:
    """The module-level string constants of a script, read without running it."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            for target in node.targets:
                if isinstance(target, ast.Name) and isinstance(node.value.value, str):
                    found[target.id] = node.value.value
    return found


def read_scenario(path: Path) -> Scenario:
    """Reads one scenario's CONTROL, RULE, SERVICE and RUNS; refuses a file that lacks one or
    whose name is not its rule's slug."""
    constants = _constants(path)
    missing = [name for name in ("CONTROL", "RULE", "SERVICE", "RUNS") if name not in constants]
    if missing:
        raise ValueError(f"{path}: set {', '.join(missing)} (module-level strings)")
    rule, runs = constants["RULE"], constants["RUNS"]
    if runs not in RUNS:
        raise ValueError(f"{path}: RUNS is {runs!r}; use one of {', '.join(RUNS)}")
    if path.stem != rule_slug(rule):
        raise ValueError(f"{path}: the scenario of {rule!r} must be named {rule_slug(rule)}.py")
    return Scenario(path.stem, constants["CONTROL"], rule, constants["SERVICE"], runs, path)


def load_scenarios(folder: Path = SCENARIOS_DIR) -> list[Scenario]:
    """Every scenario in the folder, by slug; the prelude and other _files are not scenarios."""
    paths = sorted(p for p in folder.glob("*.py") if not p.name.startswith("_"))
    if not paths:
        raise ValueError(f"no trigger scenarios in {folder}")
    return [read_scenario(path) for path in paths]
