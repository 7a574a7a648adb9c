"""Traces qc-mcp's syscalls with bpftrace, parses the trace and writes recorded-syscalls.txt."""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import subprocess
import textwrap
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from stack.process import run
from stack.seccomp import SeccompError, log
from stack.seccomp.host import HOST_ENVIRONMENT, docker
from stack.seccomp.profile import CLONE_NEW_MASK, RUNC_INIT_KEPT, RUNC_INIT_ONLY, SOCKET_FAMILIES
from stack.secrets import APP_UID

UNISTD_HEADER = Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h")
TRACING = Path("/sys/kernel/tracing")

# Numbers newer than Debian 12's header (linux-libc-dev 6.1); the kernel here is newer.
NEWER_SYSCALLS: Mapping[int, str] = {
    451: "cachestat",
    452: "fchmodat2",
    453: "map_shadow_stack",
    454: "futex_wake",
    455: "futex_wait",
    456: "futex_requeue",
    457: "statmount",
    458: "listmount",
    459: "lsm_get_self_attr",
    460: "lsm_set_self_attr",
    461: "lsm_list_modules",
    462: "mseal",
    463: "setxattrat",
    464: "getxattrat",
    465: "listxattrat",
    466: "removexattrat",
    467: "open_tree_attr",
}

BPFTRACE_PROGRAM = """
BEGIN { printf("qcrec-tracer-ready\\n"); }
tracepoint:raw_syscalls:sys_enter /uid == UID/ {
  @sys[curtask->nsproxy->pid_ns_for_children->ns.inum, pid, args->id, comm] = count();
}
tracepoint:syscalls:sys_enter_socket /uid == UID/ {
  @socket[curtask->nsproxy->pid_ns_for_children->ns.inum, args->family, args->type] = count();
}
tracepoint:syscalls:sys_enter_clone /uid == UID/ {
  @clone[curtask->nsproxy->pid_ns_for_children->ns.inum, args->clone_flags, comm] = count();
}
""".replace("UID", str(APP_UID))

RUNC_COMM = "runc:[2:INIT]"
ROLES = {
    "server": "the MCP server process (python3 /app/launch.py)",
    "docker-init": "docker-init (tini), PID 1",
    "exec": "docker exec'd python3: healthchecks and the probes",
    "runc": "runc's init, before execve",
}


class Tracer:
    """bpftrace counting every syscall made as uid 10001, keyed by pid namespace and comm."""

    def __init__(self, trace_file: Path) -> None:
        self.trace_file = trace_file
        self.stderr = trace_file.with_suffix(".err")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if not (TRACING / "events").is_dir():
            run(["mount", "-t", "tracefs", "nodev", TRACING], env=HOST_ENVIRONMENT)
        with self.trace_file.open("wb") as out, self.stderr.open("wb") as err:
            self.process = subprocess.Popen(
                ["bpftrace", "-B", "none", "-e", BPFTRACE_PROGRAM],
                stdout=out,
                stderr=err,
                env={**HOST_ENVIRONMENT, "BPFTRACE_MAP_KEYS_MAX": "65536"},
            )
        deadline = time.monotonic() + 60
        while b"qcrec-tracer-ready" not in self.trace_file.read_bytes():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SeccompError(f"bpftrace did not start: {self.stderr.read_text()}")
            time.sleep(0.2)
        log("bpftrace attached")

    def stop(self) -> str:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            self.process.wait(timeout=120)
        return self.trace_file.read_text(encoding="utf-8", errors="replace")


def syscall_numbers() -> dict[int, str]:
    numbers = dict(NEWER_SYSCALLS)
    pattern = re.compile(r"#define __NR_(\w+) (\d+)")
    for match in pattern.finditer(UNISTD_HEADER.read_text(encoding="utf-8")):
        numbers[int(match.group(2))] = match.group(1)
    return numbers


@dataclass
class Recording:
    """What bpftrace saw in the pid namespaces of our qc-mcp containers."""

    roles: dict[str, set[str]]  # syscall name -> the roles (keys of ROLES) that called it
    socket_calls: list[tuple[int, int]]  # (family, type)
    clone_flags: list[tuple[int, str]]  # (flags, comm)

    @property
    def names(self) -> list[str]:
        return sorted(self.roles)

    def only(self, role: str) -> list[str]:
        return sorted(name for name, roles in self.roles.items() if roles == {role})

    def runc_init_only(self) -> list[str]:
        return self.only("runc")


def parse_trace(text: str, namespaces: Iterable[int]) -> Recording:
    wanted = set(namespaces)
    numbers = syscall_numbers()
    calls: list[tuple[int, int, str, str]] = []  # (namespace, tgid, comm, syscall name)
    sockets: list[tuple[int, int]] = []
    clones: list[tuple[int, str]] = []
    for line in text.splitlines():
        if m := re.fullmatch(r"@sys\[(\d+), (\d+), (-?\d+), (.*)\]: \d+", line):
            if int(m.group(1)) in wanted:
                number = int(m.group(3))
                if number not in numbers:
                    raise SeccompError(f"syscall number {number} is not in {UNISTD_HEADER}")
                calls.append((int(m.group(1)), int(m.group(2)), m.group(4), numbers[number]))
        elif m := re.fullmatch(r"@socket\[(\d+), (-?\d+), (-?\d+)\]: \d+", line):
            if int(m.group(1)) in wanted:
                sockets.append((int(m.group(2)), int(m.group(3))))
        elif (m := re.fullmatch(r"@clone\[(\d+), (\d+), (.*)\]: \d+", line)) and int(
            m.group(1)
        ) in wanted:
            clones.append((int(m.group(2)), m.group(3)))
    if not calls:
        raise SeccompError("bpftrace recorded nothing in qc-mcp's pid namespaces")
    # The server is the process docker-init forked and that then exec'd python3: the one pid
    # seen under both names. docker exec'd processes start as runc's init instead.
    comms: dict[tuple[int, int], set[str]] = defaultdict(set)
    for ns, tgid, comm, _ in calls:
        comms[(ns, tgid)].add(comm)
    servers = {key for key, seen in comms.items() if {"docker-init", "python3"} <= seen}
    roles: dict[str, set[str]] = defaultdict(set)
    for ns, tgid, comm, name in calls:
        if comm == RUNC_COMM:
            role = "runc"
        elif comm == "docker-init":
            role = "docker-init"
        else:
            role = "server" if (ns, tgid) in servers else "exec"
        roles[name].add(role)
    return Recording(dict(roles), sorted(set(sockets)), sorted(set(clones)))


def check_recording(recording: Recording) -> list[str]:
    """Things a reviewer must look at before generating the profile from this recording."""
    notes = []
    families = sorted({family for family, _ in recording.socket_calls})
    stray = [f for f in families if f not in SOCKET_FAMILIES.values()]
    if stray:
        notes.append(f"socket() called with families {stray}: the profile would deny them")
    for flags, comm in recording.clone_flags:
        if flags & CLONE_NEW_MASK:
            notes.append(f"clone with namespace flags {flags:#x} by {comm}")
    runc_only = set(recording.runc_init_only())
    reviewed = set(RUNC_INIT_ONLY) | set(RUNC_INIT_KEPT)
    if runc_only != reviewed:
        notes.append(
            f"runc-init-only set changed: now {sorted(runc_only)}, reviewed (RUNC_INIT_ONLY + "
            f"RUNC_INIT_KEPT) {sorted(reviewed)}"
        )
    return notes


def write_recorded(recording: Recording, path: Path, image: str) -> None:
    docker_version = docker("version", "--format", "{{.Server.Version}}").stdout.strip()
    runc_lines = run(
        ["runc", "--version"], env=HOST_ENVIRONMENT, capture=True, check=False
    ).stdout.splitlines()
    runc = runc_lines[0] if runc_lines else "runc ?"
    families = sorted({family for family, _ in recording.socket_calls})
    clone_flags = sorted({f"{flags:#x}" for flags, _ in recording.clone_flags})
    header = [
        "# Syscalls made by qc-mcp (server, docker-init, healthchecks, docker exec probes) as",
        "# recorded by `bin/qcstack seccomp record` (RUN-05). Input to `qcstack seccomp generate`.",
        f"# date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}",
        f"# kernel: {os.uname().release}; docker: {docker_version}; {runc}",
        f"# image: {image}",
        "# how: bpftrace tracepoint:raw_syscalls:sys_enter filtered to uid 10001 and to the pid",
        "#   namespaces of the qc-mcp containers of compose project qcstack-record, started",
        "#   with a permissive profile (clone3 -> ENOSYS as in production) before the stack",
        "#   started and stopped after it was down. Workload: server start and stop,",
        "#   healthchecks, MCP initialize/list_tools/call_tool sessions (direct: DNS failure;",
        "#   through an HTTPS proxy to a QuantConnect API double, one answer of 20000 projects),",
        "#   docker pause/unpause, SIGSTOP/SIGCONT, and the benign docker exec probes (/tmp",
        "#   writes, /proc reads, fork/fd limits, noexec exec, setuid, sockets, ctypes, threads,",
        "#   signals, orphan reaping, /proc/<pid>/fd/1 writes). Never the denied-syscall checks.",
        f"# socket families seen: {families}; clone flags seen: {clone_flags}",
    ]
    server = sorted(n for n, roles in recording.roles.items() if "server" in roles)
    for title, names in (
        (f"used by {ROLES['server']}", server),
        (f"used only by {ROLES['exec']}", recording.only("exec")),
        (f"used only by {ROLES['docker-init']}", recording.only("docker-init")),
        (
            f"used only by {ROLES['runc']} (reviewed in stack/seccomp/profile.py: RUNC_INIT_ONLY "
            "are not allowed, RUNC_INIT_KEPT are)",
            recording.runc_init_only(),
        ),
    ):
        header += textwrap.wrap(
            f"{title} ({len(names)}): {' '.join(names)}",
            width=98,
            initial_indent="# ",
            subsequent_indent="#   ",
            break_on_hyphens=False,
        )
    header.append(f"# {len(recording.names)} syscalls:")
    path.write_text("\n".join([*header, *recording.names]) + "\n", encoding="utf-8")
