"""Parses Falco's condition language into a tree (macro and list names left unresolved)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

UNARY_OPERATORS = ("exists",)
LIST_OPERATORS = ("in", "intersects", "pmatch")
# Longest first, so that "<=" is not read as "<" and "bstartswith" not as ...
BINARY_OPERATORS = (
    "==",
    "!=",
    "<=",
    ">=",
    "=",
    "<",
    ">",
    "bcontains",
    "bstartswith",
    "icontains",
    "contains",
    "startswith",
    "endswith",
    "iglob",
    "glob",
    "regex",
)
# Falco's field transformers: `tolower(proc.name) = bash`.
TRANSFORMERS = ("tolower", "toupper", "b64", "basename", "len")
_WORD_OPERATORS = {
    op for op in (*UNARY_OPERATORS, *LIST_OPERATORS, *BINARY_OPERATORS) if op[0].isalpha()
}

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_FIELD_ARGUMENT = re.compile(r"\[([^\]]*)\]")
_BARE_VALUE = re.compile(r"[^\s(),]+(?:\[[^\]]*\][^\s(),]*)*")
_BARE_LIST_ITEM = re.compile(r"[^\s(),\"']+(?:\[[^\]]*\][^\s(),\"']*)*")


class ConditionError(ValueError):
    """A condition that is not valid Falco syntax; the message says where and why."""


@dataclass(frozen=True)
class Value:
    """A literal operand: `quoted` is True when it was written in quotes (never a list name)."""

    text: str
    quoted: bool = False


@dataclass(frozen=True)
class Field:
    """A field reference such as `proc.aname[2]`, possibly inside transformers."""

    name: str
    argument: str | None = None
    transformers: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """The field as written without transformers: the key of an event dict."""
        return self.name if self.argument is None else f"{self.name}[{self.argument}]"


@dataclass(frozen=True)
class Check:
    """`field op operand`: operand is None (exists), a Value, a Field (val(...)) or a list."""

    field: Field
    operator: str
    operand: Value | Field | tuple[Value, ...] | None


@dataclass(frozen=True)
class MacroRef:
    name: str


@dataclass(frozen=True)
class Not:
    operand: Node


@dataclass(frozen=True)
class And:
    operands: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    operands: tuple[Node, ...]


Node = Check | MacroRef | Not | And | Or


def walk(node: Node) -> Iterator[Node]:
    """The node and every node beneath it, parents first."""
    yield node
    match node:
        case And(operands) | Or(operands):
            for operand in operands:
                yield from walk(operand)
        case Not(operand):
            yield from walk(operand)


def parse(condition: str) -> Node:
    """The tree of one condition; ConditionError names the position of the first problem."""
    return _Parser(condition).parse()


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, problem: str) -> ConditionError:
        snippet = self.text[self.pos : self.pos + 30].replace("\n", " ")
        return ConditionError(f"{problem} at character {self.pos} (near {snippet!r})")

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek_char(self) -> str:
        self.skip_space()
        return self.text[self.pos : self.pos + 1]

    def peek_word(self) -> str:
        self.skip_space()
        match = _IDENTIFIER.match(self.text, self.pos)
        return match.group(0) if match else ""

    def take_word(self, word: str) -> bool:
        """Consume `word` if it comes next as a whole word."""
        if self.peek_word() == word:
            self.pos += len(word)
            return True
        return False

    def expect(self, char: str) -> None:
        if self.peek_char() != char:
            raise self.fail(f"expected {char!r}")
        self.pos += 1

    def parse(self) -> Node:
        if not self.text.strip():
            raise ConditionError("empty condition")
        node = self.parse_or()
        self.skip_space()
        if self.pos != len(self.text):
            raise self.fail("unexpected text after a complete expression")
        return node

    def parse_or(self) -> Node:
        operands = [self.parse_and()]
        while self.take_word("or"):
            operands.append(self.parse_and())
        return operands[0] if len(operands) == 1 else Or(tuple(operands))

    def parse_and(self) -> Node:
        operands = [self.parse_not()]
        while self.take_word("and"):
            operands.append(self.parse_not())
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def parse_not(self) -> Node:
        if self.take_word("not"):
            return Not(self.parse_not())
        return self.parse_primary()

    def parse_primary(self) -> Node:
        if self.peek_char() == "(":
            self.pos += 1
            node = self.parse_or()
            self.expect(")")
            return node
        word = self.peek_word()
        if not word:
            raise self.fail("expected a field, a macro name, 'not' or '('")
        if word in ("and", "or"):
            raise self.fail(f"'{word}' without a left operand")
        if word in TRANSFORMERS and self.text[self.pos + len(word) :].lstrip().startswith("("):
            return self.parse_check(self.parse_field())
        self.pos += len(word)
        argument = self.parse_argument()
        operator = self.peek_operator()
        if operator is None:
            if argument is not None or "." in word:
                raise self.fail(f"field {word!r} without an operator")
            return MacroRef(word)
        return self.parse_check(Field(word, argument))

    def parse_argument(self) -> str | None:
        match = _FIELD_ARGUMENT.match(self.text, self.pos)
        if not match:
            return None
        self.pos = match.end()
        return match.group(1)

    def parse_field(self) -> Field:
        """A field, possibly wrapped in transformers: `tolower(proc.name)`."""
        word = self.peek_word()
        if word in TRANSFORMERS and self.text[self.pos + len(word) :].lstrip().startswith("("):
            self.pos += len(word)
            self.expect("(")
            inner = self.parse_field()
            self.expect(")")
            return Field(inner.name, inner.argument, (word, *inner.transformers))
        if not word or "." not in word:
            raise self.fail("expected a field name")
        self.pos += len(word)
        return Field(word, self.parse_argument())

    def peek_operator(self) -> str | None:
        self.skip_space()
        word = self.peek_word()
        if word in _WORD_OPERATORS:
            return word
        for operator in BINARY_OPERATORS:
            if not operator[0].isalpha() and self.text.startswith(operator, self.pos):
                return operator
        return None

    def parse_check(self, field: Field) -> Check:
        operator = self.peek_operator()
        if operator is None:
            raise self.fail(f"expected an operator after field {field.key!r}")
        self.pos += len(operator)
        if operator in UNARY_OPERATORS:
            return Check(field, operator, None)
        if operator in LIST_OPERATORS:
            return Check(field, operator, self.parse_list())
        return Check(field, operator, self.parse_value())

    def parse_value(self) -> Value | Field:
        self.skip_space()
        if self.text.startswith("val(", self.pos):
            self.pos += len("val(")
            field = self.parse_field()
            self.expect(")")
            return field
        quoted = self.parse_quoted()
        if quoted is not None:
            return quoted
        match = _BARE_VALUE.match(self.text, self.pos)
        if not match:
            raise self.fail("expected a value")
        self.pos = match.end()
        return Value(match.group(0))

    def parse_quoted(self) -> Value | None:
        quote = self.text[self.pos : self.pos + 1]
        if quote not in ("'", '"'):
            return None
        chars: list[str] = []
        index = self.pos + 1
        while index < len(self.text):
            char = self.text[index]
            if char == "\\" and index + 1 < len(self.text):
                chars.append(self.text[index + 1])
                index += 2
                continue
            if char == quote:
                self.pos = index + 1
                return Value("".join(chars), quoted=True)
            chars.append(char)
            index += 1
        raise self.fail("unterminated string")

    def parse_list(self) -> tuple[Value, ...]:
        self.expect("(")
        items: list[Value] = []
        if self.peek_char() == ")":
            self.pos += 1
            return ()
        while True:
            self.skip_space()
            item = self.parse_quoted()
            if item is None:
                match = _BARE_LIST_ITEM.match(self.text, self.pos)
                if not match:
                    raise self.fail("expected a list item")
                self.pos = match.end()
                item = Value(match.group(0))
            items.append(item)
            char = self.peek_char()
            if char == ",":
                self.pos += 1
            elif char == ")":
                self.pos += 1
                return tuple(items)
            else:
                raise self.fail("expected ',' or ')' in a list")
