"""The gateway's audit log: hash-chained, whole entries only, and any tampering is named."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.audit import AuditError, AuditLog, verify


def write_entries(path: Path, count: int) -> None:
    log = AuditLog(path)
    for number in range(count):
        log.append({"event": "call", "tool": "read_account", "n": number})
    log.close()


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def test_entries_chain_and_verify(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_entries(path, 5)
    result = verify(path)
    assert result.ok and result.entries == 5
    entries = [json.loads(line) for line in lines(path)]
    assert [e["seq"] for e in entries] == [1, 2, 3, 4, 5]
    assert all(e["prev"] == p["hash"] for p, e in itertools.pairwise(entries))


def test_reopened_log_continues_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_entries(path, 2)
    write_entries(path, 2)
    assert verify(path).entries == 4 and verify(path).ok


def test_edited_entry_is_named(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_entries(path, 4)
    content = lines(path)
    content[2] = content[2].replace(b"read_account", b"read_accounX")
    path.write_bytes(b"".join(content))
    result = verify(path)
    assert (result.ok, result.first_broken) == (False, 3)
    assert "changed" in result.reason


def test_deleted_entry_is_named(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_entries(path, 4)
    content = lines(path)
    del content[1]
    path.write_bytes(b"".join(content))
    assert (verify(path).ok, verify(path).first_broken) == (False, 2)


def test_reordered_entries_are_named(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_entries(path, 4)
    content = lines(path)
    content[1], content[2] = content[2], content[1]
    path.write_bytes(b"".join(content))
    assert (verify(path).ok, verify(path).first_broken) == (False, 2)


def test_truncated_tail_entry_is_a_torn_entry(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_entries(path, 3)
    path.write_bytes(path.read_bytes()[:-10])
    result = verify(path)
    assert (result.ok, result.first_broken) == (False, 3)
    assert "torn" in result.reason


def test_deleting_the_last_entry_is_only_found_against_an_anchor(tmp_path: Path) -> None:
    # A chain alone cannot show its own end was cut off: that takes the last hash kept elsewhere.
    path = tmp_path / "audit.jsonl"
    write_entries(path, 3)
    last = json.loads(lines(path)[-1])["hash"]
    path.write_bytes(b"".join(lines(path)[:-1]))
    result = verify(path)
    assert result.ok and result.last is not None and result.last["hash"] != last


def test_a_broken_log_is_refused_rather_than_extended(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_entries(path, 2)
    path.write_bytes(path.read_bytes().replace(b'"n":1', b'"n":7'))
    with pytest.raises(AuditError, match="broken at line 2"):
        AuditLog(path)


def test_unwritable_log_location_is_refused_with_the_path(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(AuditError, match="cannot open the audit log"):
        AuditLog(blocker / "audit.jsonl")


EVENTS = st.lists(
    st.dictionaries(
        st.text(min_size=1, max_size=8).filter(lambda k: k not in {"seq", "prev", "hash", "time"}),
        st.one_of(st.text(max_size=20), st.integers(), st.booleans(), st.none()),
        max_size=4,
    ),
    min_size=2,
    max_size=12,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(events=EVENTS, data=st.data())
def test_any_single_tampering_is_found_at_or_before_the_entry_touched(
    tmp_path_factory: pytest.TempPathFactory, events: list[dict[str, Any]], data: st.DataObject
) -> None:
    path = tmp_path_factory.mktemp("audit") / "audit.jsonl"
    log = AuditLog(path)
    for event in events:
        log.append(event)
    log.close()
    content = lines(path)
    index = data.draw(st.integers(0, len(content) - 2), label="entry")  # the last: see anchor test
    how = data.draw(st.sampled_from(["delete", "swap", "edit"]), label="tampering")
    if how == "delete":
        del content[index]
    elif how == "swap":
        content[index], content[index + 1] = content[index + 1], content[index]
    else:
        entry = json.loads(content[index])
        entry["tampered"] = True
        content[index] = json.dumps(entry).encode() + b"\n"
    path.write_bytes(b"".join(content))
    result = verify(path)
    assert not result.ok
    assert result.first_broken is not None and result.first_broken <= index + 2
