"""Evaluates a parsed condition against one event's field values with Falco's operator semantics."""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Callable, Mapping

from stack.falco.condition import And, Check, Field, MacroRef, Node, Not, Or, Value

# Fields Falco types as an IP network (compared by containment) or an IP address.
NETWORK_FIELDS = frozenset({"fd.net", "fd.cnet", "fd.snet", "fd.lnet", "fd.rnet"})
ADDRESS_FIELDS = frozenset({"fd.ip", "fd.cip", "fd.sip", "fd.lip", "fd.rip"})

_TRANSFORMERS: dict[str, Callable[[object], object]] = {
    "tolower": lambda value: str(value).lower(),
    "toupper": lambda value: str(value).upper(),
    "basename": lambda value: str(value).rsplit("/", 1)[-1],
    "len": lambda value: len(value) if isinstance(value, str | list | tuple | bytes) else 0,
}


class EvaluationError(ValueError):
    """A condition that cannot be evaluated: an unknown macro or list, a value of the wrong type."""


class Evaluator:
    """Evaluates conditions, expanding macros and lists from the given definitions."""

    def __init__(self, macros: Mapping[str, Node], lists: Mapping[str, tuple[str, ...]]) -> None:
        self.macros = macros
        self.lists = lists

    def matches(self, node: Node, event: Mapping[str, object]) -> bool:
        match node:
            case And(operands):
                return all(self.matches(operand, event) for operand in operands)
            case Or(operands):
                return any(self.matches(operand, event) for operand in operands)
            case Not(operand):
                return not self.matches(operand, event)
            case MacroRef(name):
                if name not in self.macros:
                    raise EvaluationError(f"macro {name!r} is not defined")
                return self.matches(self.macros[name], event)
            case Check():
                return self.check(node, event)
        raise EvaluationError(f"not a condition node: {node!r}")

    def items(self, values: tuple[Value, ...]) -> tuple[str, ...]:
        """A list operand's items, list names expanded (as Falco does for unquoted names)."""
        expanded: list[str] = []
        for value in values:
            if not value.quoted and value.text in self.lists:
                expanded.extend(self.lists[value.text])
            else:
                expanded.append(value.text)
        return tuple(expanded)

    def check(self, check: Check, event: Mapping[str, object]) -> bool:
        value = field_value(check.field, event)
        if check.operator == "exists":
            return value is not None
        if value is None:
            # Falco: a comparison on a field that has no value for this event is false.
            return False
        operand = check.operand
        if isinstance(operand, Field):
            other = field_value(operand, event)
            if other is None:
                return False
            return compare(check.field.name, check.operator, value, str(other))
        if isinstance(operand, tuple):
            return list_check(check.field.name, check.operator, value, self.items(operand))
        if operand is None:
            raise EvaluationError(f"operator {check.operator!r} needs an operand")
        return compare(check.field.name, check.operator, value, operand.text)


# Falco's filter-only fields, derived from the fields an event carries: fd.snet is the server
# address's network, fd.ip either end's address, fd.port either end's port.
DERIVED_FIELDS: dict[str, tuple[str, ...]] = {
    "fd.snet": ("fd.sip",),
    "fd.cnet": ("fd.cip",),
    "fd.lnet": ("fd.lip",),
    "fd.rnet": ("fd.rip",),
    "fd.net": ("fd.cip", "fd.sip"),
    "fd.ip": ("fd.cip", "fd.sip"),
    "fd.port": ("fd.cport", "fd.sport"),
}


def field_value(field: Field, event: Mapping[str, object]) -> object:
    value = event.get(field.key)
    if value is None and field.key in DERIVED_FIELDS:
        found = [
            event[source] for source in DERIVED_FIELDS[field.key] if event.get(source) is not None
        ]
        value = found[0] if len(found) == 1 else (tuple(found) or None)
    for transformer in reversed(field.transformers):
        if value is None:
            return None
        if transformer not in _TRANSFORMERS:
            raise EvaluationError(f"transformer {transformer!r} is not evaluated here")
        value = _TRANSFORMERS[transformer](value)
    return value


def list_check(name: str, operator: str, value: object, items: tuple[str, ...]) -> bool:
    values = list(value) if isinstance(value, list | tuple | set | frozenset) else [value]
    if operator == "pmatch":
        return any(path_match(str(v), item) for v in values for item in items)
    hits = [any(compare(name, "=", v, item) for item in items) for v in values]
    if operator == "in":
        # Falco: every value of a multi-valued field must be in the list.
        return bool(hits) and all(hits)
    if operator == "intersects":
        return any(hits)
    raise EvaluationError(f"{operator!r} is not a list operator")


def path_match(path: str, prefix: str) -> bool:
    """pmatch: the path is the prefix or lies beneath it (whole path components only)."""
    if any(char in prefix for char in "*?["):
        return fnmatch.fnmatchcase(path, prefix) or fnmatch.fnmatchcase(path, prefix + "/*")
    prefix = prefix.rstrip("/")
    return path == prefix or path.startswith(prefix + "/") or prefix == ""


def compare(name: str, operator: str, value: object, operand: str) -> bool:
    if isinstance(value, list | tuple | set | frozenset):
        # A multi-valued field (proc.aname without an index) matches when any value does.
        return any(compare(name, operator, item, operand) for item in value)
    if operator in ("=", "==", "!="):
        equal = equals(name, value, operand)
        return equal if operator != "!=" else not equal
    if operator in ("<", "<=", ">", ">="):
        left, right = number(name, value), number(name, operand)
        return {
            "<": left < right,
            "<=": left <= right,
            ">": left > right,
            ">=": left >= right,
        }[operator]
    if operator in ("bcontains", "bstartswith"):
        data = value if isinstance(value, bytes) else str(value).encode()
        try:
            needle = bytes.fromhex(operand)
        except ValueError as error:
            raise EvaluationError(f"{operator} needs hex digits, not {operand!r}") from error
        return needle in data if operator == "bcontains" else data.startswith(needle)
    text = str(value)
    string_operators: dict[str, Callable[[], bool]] = {
        "contains": lambda: operand in text,
        "icontains": lambda: operand.lower() in text.lower(),
        "startswith": lambda: text.startswith(operand),
        "endswith": lambda: text.endswith(operand),
        "glob": lambda: fnmatch.fnmatchcase(text, operand),
        "iglob": lambda: fnmatch.fnmatchcase(text.lower(), operand.lower()),
        # Falco's regex operator is RE2's full match: the whole value must match.
        "regex": lambda: re.fullmatch(operand, text) is not None,
    }
    if operator not in string_operators:
        raise EvaluationError(f"unknown operator {operator!r}")
    return string_operators[operator]()


def equals(name: str, value: object, operand: str) -> bool:
    if name in NETWORK_FIELDS:
        return ip_in(value, operand)
    if name in ADDRESS_FIELDS:
        return ip_in(value, operand) if "/" in operand else same_address(value, operand)
    if isinstance(value, bool):
        return value == boolean(name, operand)
    if isinstance(value, int | float):
        return value == number(name, operand)
    return str(value) == operand


def ip_in(value: object, network: str) -> bool:
    try:
        return ipaddress.ip_address(str(value)) in ipaddress.ip_network(network, strict=False)
    except ValueError:
        return False


def same_address(value: object, operand: str) -> bool:
    try:
        return ipaddress.ip_address(str(value)) == ipaddress.ip_address(operand)
    except ValueError:
        return str(value) == operand


def number(name: str, value: object) -> float:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(int(str(value), 0))
    except ValueError:
        try:
            return float(str(value))
        except ValueError as error:
            raise EvaluationError(f"{name}: {value!r} is not a number") from error


def boolean(name: str, operand: str) -> bool:
    lowered = operand.lower()
    if lowered not in ("true", "false"):
        raise EvaluationError(f"{name} is a boolean field: compare it to true or false")
    return lowered == "true"
