"""Secret files a service reads at start, and the error that stops it when one is unusable."""

from __future__ import annotations

from pathlib import Path


class SettingsError(RuntimeError):
    """A setting or secret is missing or unusable; the message says what to fix."""


def read_secret(path: Path, what: str) -> bytes:
    try:
        value = path.read_bytes().strip()
    except OSError as error:
        raise SettingsError(f"cannot read {what} from {path} ({error.strerror})") from error
    if len(value) < 16:
        raise SettingsError(f"{what} in {path} is empty or shorter than 16 bytes")
    return value
