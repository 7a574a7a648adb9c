"""The record mode: bpftrace around the workload, then recorded-syscalls.txt for review."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from stack.seccomp import log
from stack.seccomp.drive import drive_workload, preflight
from stack.seccomp.profile import recording_profile, render_profile
from stack.seccomp.stage import Stage
from stack.seccomp.trace import Tracer, check_recording, parse_trace, write_recorded
from stack.settings import Settings


def record(settings: Settings, recorded_file: Path, keep_trace: Path | None = None) -> None:
    """Records qc-mcp's syscalls under the workload into recorded_file; prints REVIEW notes."""
    preflight(settings)
    with tempfile.TemporaryDirectory(prefix="qcrec-") as tmp:
        stage = Stage(settings, Path(tmp))
        stage.prepare(render_profile(recording_profile()))
        stage.remove_leftovers()
        tracer = Tracer(stage.root / "bpftrace.out")
        tracer.start()
        try:
            namespaces = drive_workload(stage)
        finally:
            stage.remove_leftovers()
            time.sleep(1)
            text = tracer.stop()
            if keep_trace is not None:
                shutil.copy(tracer.trace_file, keep_trace)
    recording = parse_trace(text, namespaces)
    write_recorded(recording, recorded_file, settings.image("qc-mcp"))
    log(f"wrote {recorded_file}: {len(recording.names)} syscalls")
    log(f"runc init only: {recording.runc_init_only()}")
    for note in check_recording(recording):
        log(f"REVIEW: {note}")
    log("next: bin/qcstack seccomp generate && bin/qcstack seccomp verify")
