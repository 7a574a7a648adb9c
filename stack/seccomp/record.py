"""The record mode: bpftrace around the workload, then SERVICE.recorded.txt for review."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from stack.seccomp import log
from stack.seccomp.drive import drive_workload, preflight
from stack.seccomp.profile import recording_profile, render_profile
from stack.seccomp.services import SERVICES
from stack.seccomp.stage import RECORD_PROJECT, Stage
from stack.seccomp.trace import Tracer, check_recording, parse_trace, write_recorded
from stack.settings import Settings


def record(settings: Settings, output_dir: Path, keep_trace: Path | None = None) -> None:
    """Records the services' syscalls under the workload into output_dir/SERVICE.recorded.txt;
    prints REVIEW notes."""
    preflight(settings)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="qcrec-") as tmp:
        stage = Stage(settings, Path(tmp))
        permissive = render_profile(recording_profile())
        stage.prepare({name: permissive for name in SERVICES})
        stage.remove_leftovers()
        tracer = Tracer(stage.root / "bpftrace.out")
        tracer.start()
        try:
            workload = drive_workload(stage)
        finally:
            stage.remove_leftovers()
            time.sleep(1)
            text = tracer.stop()
            if keep_trace is not None:
                shutil.copy(tracer.trace_file, keep_trace)
    for failure in workload.failures:
        log(f"REVIEW: the workload did not behave as the stack should: {failure}")
    for phase, logs in enumerate(workload.logs, start=1):
        for name, text_log in logs.items():
            alarms = SERVICES[name].log_alarms
            if any(alarm in text_log for alarm in alarms):
                log(f"REVIEW: {name}'s log in phase {phase} has lines with one of {alarms}")
    recordings = parse_trace(text, workload.cgroups)
    for name, recording in recordings.items():
        path = SERVICES[name].recorded_file(output_dir)
        write_recorded(recording, path, settings.image(name), RECORD_PROJECT)
        log(f"wrote {path}: {len(recording.names)} syscalls")
        log(f"{name}: runc init only: {recording.runc_init_only()}")
        for note in check_recording(recording):
            log(f"REVIEW: {note}")
    log(f"record took {time.monotonic() - started:.0f}s")
    log("next: bin/qcstack seccomp generate && bin/qcstack seccomp verify")
