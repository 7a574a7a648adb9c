"""`qcstack falco`: lints the rules and falco.yaml; regenerates the image lists and README table."""

from __future__ import annotations

import argparse
import sys

from stack.settings import Settings


def cmd_falco(settings: Settings, args: argparse.Namespace) -> int:
    from stack.falco.images import update_rules_file
    from stack.falco.lint import LintInputs, lint
    from stack.falco.rules import OUR_RULES
    from stack.readme import README_PATH, update_readme

    if args.write_rules:
        changed = update_rules_file(OUR_RULES, settings.compose_file)
        print(f"{OUR_RULES.name}: {'image lists updated' if changed else 'already current'}")
    if args.write_readme:
        changed = update_readme(README_PATH)
        print(f"{README_PATH.name}: {'updated' if changed else 'already current'}")
    if args.action != "lint" and (args.write_rules or args.write_readme):
        return 0
    problems = lint(LintInputs(compose=settings.compose_file))
    for problem in problems:
        print(f"qcstack falco lint: {problem}", file=sys.stderr)
    if problems:
        print(f"{len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"{OUR_RULES.name} and falco.yaml: no problems")
    return 0


def add_falco_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    falco = commands.add_parser(
        "falco", help="check the Falco rules and falco.yaml (DET-01..07); regenerate from compose"
    )
    falco.add_argument(
        "action", nargs="?", choices=["lint"], help="lint (the default without --write-*)"
    )
    falco.add_argument(
        "--write-rules",
        action="store_true",
        help="regenerate the rules file's image lists from compose/compose.yaml",
    )
    falco.add_argument("--write-readme", action="store_true", help="regenerate the README's tables")
    falco.set_defaults(handler=cmd_falco)
