"""The audit log: one JSON line per event, each hash-chained to the one before, on disk first.

One implementation for every service that keeps one (the gateway, the responder); each names
its own default file for the verifier (gateway/audit.py, responder/audit.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GENESIS = "0" * 64


def canonical(document: Mapping[str, Any]) -> bytes:
    """The bytes an entry's hash covers: sorted keys, no spaces, UTF-8."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry_hash(entry: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical({k: v for k, v in entry.items() if k != "hash"})).hexdigest()


class AuditError(RuntimeError):
    """The audit log cannot be written or read; the service refuses to go on without it."""


class AuditLog:
    """Appends entries; each carries its sequence number, the previous entry's hash and its own.

    Every append is one write(2) of a whole line on an O_APPEND descriptor followed by fsync, so
    a crash leaves whole entries only, and the call an entry records proceeds only once it is on
    disk.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as error:
            raise AuditError(f"cannot open the audit log {path}: {error.strerror}") from error
        last = _last_entry(path)
        self._seq = int(last["seq"]) if last else 0
        self._prev = str(last["hash"]) if last else GENESIS

    def append(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """Writes one entry for `event` and returns it; raises AuditError when it cannot."""
        with self._lock:
            entry: dict[str, Any] = {
                "seq": self._seq + 1,
                "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
                + f".{int(time.time() * 1000) % 1000:03d}Z",
                **event,
                "prev": self._prev,
            }
            entry["hash"] = entry_hash(entry)
            line = canonical(entry) + b"\n"
            try:
                written = os.write(self._fd, line)
                os.fsync(self._fd)
            except OSError as error:
                raise AuditError(f"cannot write the audit log {self.path}: {error}") from error
            if written != len(line):
                raise AuditError(f"short write to the audit log {self.path}")
            self._seq, self._prev = entry["seq"], entry["hash"]
            return entry

    def close(self) -> None:
        os.close(self._fd)


def _last_entry(path: Path) -> dict[str, Any] | None:
    result = verify(path)
    if not result.ok:
        raise AuditError(
            f"the audit log {path} is broken at line {result.first_broken} ({result.reason}); "
            "keep it as evidence, move it aside, and start a new one"
        )
    return result.last


@dataclass(frozen=True)
class Verification:
    ok: bool
    entries: int
    first_broken: int | None = None
    """The 1-based line number of the first entry that breaks the chain."""
    reason: str = ""
    last: dict[str, Any] | None = None


def verify(path: Path) -> Verification:
    """Checks every entry's hash, sequence number and link to the previous one."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return Verification(ok=True, entries=0)
    if data and not data.endswith(b"\n"):
        line = data.count(b"\n") + 1
        return Verification(False, line - 1, line, "torn entry: the last line is incomplete")
    prev, last = GENESIS, None
    for number, raw in enumerate(data.splitlines(), start=1):
        try:
            entry = json.loads(raw)
        except ValueError:
            return Verification(False, number - 1, number, "not a JSON object")
        if not isinstance(entry, dict):
            return Verification(False, number - 1, number, "not a JSON object")
        if entry.get("seq") != number:
            reason = f"sequence number {entry.get('seq')}, expected {number}"
            return Verification(False, number - 1, number, reason)
        if entry.get("prev") != prev:
            reason = "does not link to the entry before it (deleted or reordered)"
            return Verification(False, number - 1, number, reason)
        if entry.get("hash") != entry_hash(entry):
            return Verification(False, number - 1, number, "its content was changed")
        prev, last = entry["hash"], entry
    return Verification(True, len(data.splitlines()), last=last)


def verify_command(service: str, default_path: Callable[[], Path]) -> Callable[..., int]:
    """The `python3 -m <service>.audit verify [PATH]` command: checks the chain and names the
    first broken entry; PATH defaults to `default_path()` (the service's state folder)."""

    def main(argv: list[str] | None = None) -> int:
        args = sys.argv[1:] if argv is None else argv
        if not args or args[0] != "verify" or len(args) > 2:
            print(f"usage: python3 -m {service}.audit verify [AUDIT_LOG]", file=sys.stderr)
            return 2
        path = Path(args[1]) if len(args) == 2 else default_path()
        if not path.is_file():
            where = f"no audit log at {path} (the {service} makes it when it starts)"
            print(where, file=sys.stderr)
            return 1
        result = verify(path)
        if result.ok:
            print(f"audit log {path}: intact, {result.entries} entries")
            return 0
        print(
            f"audit log {path}: broken at entry {result.first_broken} ({result.reason}); "
            f"the {result.entries} entries before it are intact",
            file=sys.stderr,
        )
        return 1

    return main
