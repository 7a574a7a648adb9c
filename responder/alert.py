"""Falco's JSON alert (json_output, as http_output posts it), typed, and its priority scale."""

from __future__ import annotations

import enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Priority(enum.IntEnum):
    """Falco's priorities, from least to most severe (its rules' `priority:` values)."""

    DEBUG = 0
    INFORMATIONAL = 1
    NOTICE = 2
    WARNING = 3
    ERROR = 4
    CRITICAL = 5
    ALERT = 6
    EMERGENCY = 7

    @classmethod
    def parse(cls, value: object) -> Priority:
        """Reads a priority by name, in any case; Falco writes "Critical", rules say "CRITICAL",
        and "info" is Falco's short form of Informational."""
        if isinstance(value, Priority):
            return value
        if not isinstance(value, str):
            raise ValueError(f"a priority is a name ({', '.join(p.label for p in cls)})")
        name = value.strip().upper()
        name = "INFORMATIONAL" if name == "INFO" else name
        try:
            return cls[name]
        except KeyError:
            names = ", ".join(p.label for p in cls)
            shown = repr(value[:40])
            raise ValueError(f"{shown} is not one of Falco's priorities ({names})") from None

    @property
    def label(self) -> str:
        """The name as Falco writes it in an alert: "Critical"."""
        return self.name.capitalize()


class FalcoAlert(BaseModel):
    """One alert. Falco sends more fields over time (and append_output adds some): they are
    allowed and kept aside, never required."""

    model_config = ConfigDict(extra="allow", frozen=True)

    rule: str = Field(min_length=1, max_length=1024)
    priority: Priority
    output: str = Field(default="", max_length=64 * 1024)
    time: str = Field(default="", max_length=64)
    source: str = Field(default="", max_length=64)
    hostname: str = Field(default="", max_length=255)
    uuid: str = Field(default="", max_length=64)
    tags: tuple[str, ...] = ()
    output_fields: dict[str, Any] = {}

    @field_validator("priority", mode="before")
    @classmethod
    def _priority(cls, value: object) -> Priority:
        return Priority.parse(value)

    def field_text(self, name: str) -> str:
        """One of the alert's output fields as text; empty when the rule did not output it."""
        value = self.output_fields.get(name)
        return "" if value is None else str(value)

    @property
    def container(self) -> str:
        """The container the alert is about: its name, else its id (container plugin fields)."""
        return self.field_text("container.name") or self.field_text("container.id")
