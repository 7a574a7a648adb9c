"""Brokerage credentials kept by the gateway: the model names a configuration, never a secret.

A live deployment's `model.brokerage` (and each of `model.dataProviders`) may carry only the
module's `id`, the name of one of the operator's configurations under CONFIGURATION_KEY, and
the paper brokerage's non-secret holdings and cash. After the policy (and a person, for live
trading) let the call through, the gateway fills in that configuration's settings from its
secret file; the answer is scrubbed of them before it goes back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from gateway.redact import REDACTED

CONFIGURATION_KEY = "qcstack-configuration"
MODEL_SUPPLIED = frozenset({"id", CONFIGURATION_KEY, "holdings", "cash"})
"""What the model may put in a brokerage or data provider: nothing secret."""
DEPLOY_TOOL = "create_live_algorithm"


class BrokerageError(ValueError):
    """A call or the secret file is unusable; the message names no secret value."""


@dataclass(frozen=True)
class BrokerageStore:
    """The operator's named configurations: name -> the module's settings (with its `id`)."""

    configurations: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> BrokerageStore:
        """Reads the secret file; a missing file is an empty store (no credentialed brokerage
        can be deployed), a malformed one is refused."""
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return cls()
        except OSError as error:
            raise BrokerageError(f"cannot read {path} ({error.strerror})") from None
        try:
            document = json.loads(text)
        except ValueError:
            raise BrokerageError(f"{path} is not JSON (name -> settings with an id)") from None
        if not isinstance(document, dict):
            raise BrokerageError(f"{path} must hold a JSON object: name -> settings")
        for name, settings in document.items():
            if not isinstance(settings, dict) or not isinstance(settings.get("id"), str):
                raise BrokerageError(f"{path}: configuration {name!r} needs a string `id`")
        return cls(document)

    @cached_property
    def secret_values(self) -> tuple[str, ...]:
        """Every string value of every configuration but the ids: what must never leave."""
        return tuple(
            value
            for settings in self.configurations.values()
            for key, value in settings.items()
            if key != "id" and isinstance(value, str) and len(value) >= 4
        )

    def refusal(self, tool: str, arguments: Mapping[str, Any]) -> str | None:
        """Why this call may not go on as the model sent it, or None."""
        if tool != DEPLOY_TOOL:
            return None
        for where, module in _modules(arguments):
            extra = sorted(set(module) - MODEL_SUPPLIED)
            if extra:
                return (
                    f"{where} carries {', '.join(map(repr, extra))}: brokerage settings come "
                    f"from the gateway's store; send only `id` and `{CONFIGURATION_KEY}`"
                )
            name = module.get(CONFIGURATION_KEY)
            if name is None:
                continue
            stored = self.configurations.get(name) if isinstance(name, str) else None
            if stored is None:
                return f"{where}: no configuration named {name!r} in the gateway's store"
            if module.get("id") != stored["id"]:
                given = module.get("id")
                return f"{where}: configuration {name!r} is for {stored['id']}, not {given!r}"
        return None

    def fill(self, tool: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """The arguments with each named configuration's settings in place of its name; only
        for arguments that `refusal` let through."""
        if tool != DEPLOY_TOOL:
            return dict(arguments)
        filled = json.loads(json.dumps(arguments))
        for _, module in _modules(filled):
            name = module.pop(CONFIGURATION_KEY, None)
            if name is None:
                continue
            stored = self.configurations.get(name) if isinstance(name, str) else None
            if stored is None:
                raise BrokerageError(f"no configuration named {name!r} in the gateway's store")
            module.update(stored)
        return dict(filled)

    def scrub(self, text: str) -> str:
        """`text` with every stored secret value replaced."""
        for value in self.secret_values:
            if value in text:
                text = text.replace(value, REDACTED)
        return text

    def scrub_json(self, value: Any) -> Any:
        """A copy of a JSON value with every stored secret replaced in each of its strings (keys
        included); scrubbing its serialized text instead would miss a secret that JSON escapes."""
        if not self.secret_values:
            return value
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, dict):
            return {self.scrub(str(k)): self.scrub_json(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.scrub_json(item) for item in value]
        return value


def _modules(arguments: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The brokerage and data-provider settings objects of a deployment, with where they are."""
    model = arguments.get("model")
    if not isinstance(model, dict):
        return []
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(model.get("brokerage"), dict):
        found.append(("model.brokerage", model["brokerage"]))
    providers = model.get("dataProviders")
    if isinstance(providers, dict):
        found += [
            (f"model.dataProviders.{k}", v) for k, v in providers.items() if isinstance(v, dict)
        ]
    return found
