"""qcstack's reading of Falco's condition language: the parser and the evaluator's semantics."""

from __future__ import annotations

from pathlib import Path

import pytest

from stack.falco.condition import (
    And,
    Check,
    ConditionError,
    Field,
    MacroRef,
    Not,
    Or,
    Value,
    parse,
)
from stack.falco.evaluate import EvaluationError, Evaluator
from stack.falco.rules import OUR_RULES, STABLE_RULES, load_rules

STABLE = load_rules([STABLE_RULES])
BOTH = load_rules([STABLE_RULES, OUR_RULES])


def conditions(path: Path) -> list[object]:
    """Every rule's and macro's condition defined in the file, named for its rule or macro."""
    named = [(f"rule {r.name}", r.condition, r.path) for r in BOTH.rules.values()]
    named += [(f"macro {m.name}", m.condition, m.path) for m in BOTH.macros.values()]
    return [pytest.param(condition, id=name) for name, condition, origin in named if origin == path]


@pytest.mark.parametrize("condition", conditions(STABLE_RULES))
def test_parser_reads_every_condition_of_the_stable_rules(condition: str) -> None:
    parse(condition)


@pytest.mark.parametrize("condition", conditions(OUR_RULES))
def test_parser_reads_every_condition_of_our_rules(condition: str) -> None:
    parse(condition)


def check(field: str, operator: str, operand: object = None) -> Check:
    return Check(Field(field), operator, operand)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("condition", "tree"),
    [
        pytest.param(
            "a and b or c",
            Or((And((MacroRef("a"), MacroRef("b"))), MacroRef("c"))),
            id="and-binds-tighter-than-or",
        ),
        pytest.param(
            "not a and b", And((Not(MacroRef("a")), MacroRef("b"))), id="not-binds-tightest"
        ),
        pytest.param("not (a or b)", Not(Or((MacroRef("a"), MacroRef("b")))), id="parentheses"),
        pytest.param(
            "not proc.pname exists",
            Not(check("proc.pname", "exists")),
            id="not-of-a-unary-check",
        ),
        pytest.param(
            "proc.aname[2]=sshd",
            Check(Field("proc.aname", "2"), "=", Value("sshd")),
            id="field-argument-index",
        ),
        pytest.param(
            "evt.arg[0] != 1",
            Check(Field("evt.arg", "0"), "!=", Value("1")),
            id="field-argument-event-arg",
        ),
        pytest.param(
            "evt.arg.flags contains O_TRUNC",
            check("evt.arg.flags", "contains", Value("O_TRUNC")),
            id="named-event-argument",
        ),
        pytest.param(
            "fd.name in (/etc/shadow, '/a b', \"c\", shell_binaries)",
            check(
                "fd.name",
                "in",
                (
                    Value("/etc/shadow"),
                    Value("/a b", True),
                    Value("c", True),
                    Value("shell_binaries"),
                ),
            ),
            id="list-literal-quoted-and-names",
        ),
        pytest.param(
            "proc.pname in (runc:[0:PARENT], runc)",
            check("proc.pname", "in", (Value("runc:[0:PARENT]"), Value("runc"))),
            id="brackets-inside-bare-items",
        ),
        pytest.param(
            "evt.rawres>=0", check("evt.rawres", ">=", Value("0")), id="no-spaces-around-operator"
        ),
        pytest.param(
            "fd.name='it\\'s'", check("fd.name", "=", Value("it's", True)), id="escaped-quote"
        ),
        pytest.param(
            "tolower(proc.name) = bash",
            Check(Field("proc.name", None, ("tolower",)), "=", Value("bash")),
            id="transformer",
        ),
        pytest.param(
            "proc.name = val(proc.pname)",
            check("proc.name", "=", Field("proc.pname")),
            id="field-as-operand",
        ),
        pytest.param("fd.name in ()", check("fd.name", "in", ()), id="empty-list"),
    ],
)
def test_parser_builds_the_expected_tree(condition: str, tree: object) -> None:
    assert parse(condition) == tree


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ("", "empty condition"),
        ("proc.name =", "expected a value"),
        ("(proc.name = a", "expected ')'"),
        ("proc.name in (a, b", "expected ',' or ')'"),
        ("and proc.name = a", "without a left operand"),
        ("proc.name frobnicates a", "without an operator"),
        ("proc.name = 'open", "unterminated string"),
        ("a b", "unexpected text after a complete expression"),
        ("proc.name in a", "expected '('"),
    ],
)
def test_parser_rejects_bad_conditions_saying_where(condition: str, message: str) -> None:
    with pytest.raises(ConditionError, match=r"empty condition|at character") as error:
        parse(condition)
    assert message in str(error.value)


EVENT: dict[str, object] = {
    "proc.name": "python3",
    "proc.cmdline": "python3 -c import os",
    "proc.aname": ["python3", "docker-init"],
    "proc.aname[1]": "docker-init",
    "evt.rawres": -13,
    "evt.failed": True,
    "fd.sport": 443,
    "fd.sip": "10.231.241.3",
    "fd.typechar": "4",
    "fd.name": "/run/secrets/qc_api_token",
    "evt.buffer": b"\x7fELF\x02",
}


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("proc.name = python3", True),
        ("proc.name == python3", True),
        ("proc.name != python3", False),
        ("proc.name = Python3", False),
        ("fd.sport = 443", True),
        ("fd.sport = 0x1bb", True),
        ("fd.sport > 442 and fd.sport >= 443 and fd.sport < 444 and fd.sport <= 443", True),
        ("fd.sport < 443", False),
        ("evt.rawres < 0", True),
        ("evt.failed = true", True),
        ("evt.failed = false", False),
        ("fd.typechar = 4", True),
        ("proc.cmdline contains '-c import'", True),
        ("proc.cmdline contains IMPORT", False),
        ("proc.cmdline icontains IMPORT", True),
        ("proc.cmdline startswith python3", True),
        ("proc.cmdline endswith os", True),
        ("proc.cmdline endswith python3", False),
        ("fd.name glob /run/*/qc_*", True),
        ("fd.name glob /run/qc_*", False),
        ("fd.name iglob /RUN/SECRETS/*", True),
        ("fd.name pmatch (/run/secrets)", True),
        ("fd.name pmatch (/run/secret)", False),
        ("fd.name pmatch (/tmp, /run)", True),
        ("fd.name in (/etc/shadow, /run/secrets/qc_api_token)", True),
        ("fd.name in (/run/secrets)", False),
        ("proc.aname in (python3, docker-init, sh)", True),
        ("proc.aname in (python3)", False),
        ("proc.aname intersects (sh, docker-init)", True),
        ("proc.aname intersects (sh, bash)", False),
        ("proc.aname = docker-init", True),
        ("proc.aname[1] = docker-init", True),
        ("proc.pname exists", False),
        ("proc.name exists", True),
        ("proc.pname = x", False),
        ("proc.pname != x", False),
        ("not proc.pname = x", True),
        ("proc.name regex 'py.*3'", True),
        ("proc.name regex 'py'", False),
        ("evt.buffer bcontains 454c46", True),
        ("evt.buffer bstartswith 7f454c46", True),
        ("evt.buffer bstartswith 454c46", False),
        ("fd.snet = 10.231.241.0/28", True),
        ("fd.snet in ('127.0.0.0/8', '10.0.0.0/8')", True),
        ("fd.snet = 127.0.0.0/8", False),
        ("fd.sip = 10.231.241.3", True),
        ("fd.net = 10.231.241.0/24", True),
        ("fd.ip = 10.231.241.3", True),
        ("tolower(proc.cmdline) contains IMPORT", False),
        ("toupper(proc.cmdline) contains IMPORT", True),
        ("proc.name = val(proc.aname[1])", False),
        ("proc.aname[1] = val(proc.aname[1])", True),
        ("fd.name in ()", False),
    ],
)
def test_evaluator_follows_falcos_operator_semantics(condition: str, expected: bool) -> None:
    """Each operator as Falco applies it; a field the event lacks makes any comparison false."""
    assert Evaluator({}, {}).matches(parse(condition), EVENT) is expected


def test_evaluator_expands_macros_and_lists() -> None:
    evaluator = Evaluator(
        {"is_python": parse("proc.name in (interpreters)")}, {"interpreters": ("python3", "node")}
    )
    assert evaluator.matches(parse("is_python and not fd.name in (interpreters)"), EVENT)
    assert not evaluator.matches(parse("proc.name in ('interpreters')"), EVENT)


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ("missing_macro", "macro 'missing_macro' is not defined"),
        ("fd.sport > many", "is not a number"),
        ("evt.failed = maybe", "compare it to true or false"),
        ("evt.buffer bcontains xyz", "needs hex digits"),
    ],
)
def test_evaluator_refuses_what_falco_would_not_load(condition: str, message: str) -> None:
    with pytest.raises(EvaluationError, match=message):
        Evaluator({}, {}).matches(parse(condition), EVENT)


def test_stable_rule_evaluates_like_falco() -> None:
    """The stable `Terminal shell in container` rule on the event of `docker exec -it sh`."""
    shell = {
        "evt.type": "execve",
        "container.id": "0123456789ab",
        "proc.name": "sh",
        "proc.tty": 34816,
        "proc.pname": "runc",
    }
    assert STABLE.matches("Terminal shell in container", shell)
    assert not STABLE.matches("Terminal shell in container", {**shell, "proc.tty": 0})
    assert not STABLE.matches("Terminal shell in container", {**shell, "container.id": "host"})
