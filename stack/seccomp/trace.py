"""Traces the services' syscalls with bpftrace, parses the trace, writes SERVICE.recorded.txt."""

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
from stack.seccomp.profile import (
    CLONE_NEW_MASK,
    EXTRA_ALLOW,
    RUNC_INIT_KEPT,
    SERVICE_DENIED,
    SOCKET_FAMILIES,
    SOCKET_FAMILIES_DENIED,
    family_name,
    not_allowed,
    socket_families_line,
)
from stack.seccomp.services import RUNC_COMM, SERVICES, Service

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

UID_FILTER = " || ".join(f"uid == {service.uid}" for service in SERVICES.values())
BPFTRACE_PROGRAM = """
BEGIN { printf("qcrec-tracer-ready\\n"); }
tracepoint:raw_syscalls:sys_enter /UIDS/ {
  @sys[cgroup, pid, args->id, comm] = count();
}
tracepoint:syscalls:sys_enter_socket /UIDS/ {
  @socket[cgroup, args->family, args->type, comm] = count();
}
tracepoint:syscalls:sys_enter_clone /UIDS/ {
  @clone[cgroup, args->clone_flags, comm] = count();
}
""".replace("UIDS", UID_FILTER)


class Tracer:
    """bpftrace counting every syscall made as the services' uids (10001 qc-mcp, 10002
    egress-proxy, 10004 gateway, 10005 gateway-relay, 10006 otel-collector, 10007
    falco-responder), keyed by cgroup (v2 id), process and comm.

    The cgroup, not the pid namespace: a namespace's inode number is reused as soon as the
    namespace is freed, so while other stacks start and stop (a test stack, the mutation check),
    a number seen during the recording can belong to one of their containers as well as ours;
    64-bit cgroup ids are never reused. A `docker exec` joins its container's cgroup before it
    drops to the container's uid, so it is counted with the container."""

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
    """What bpftrace saw in the pid namespaces of one service's containers."""

    service: Service
    roles: dict[str, set[str]]  # syscall name -> the roles (keys of Service.roles) that called it
    socket_calls: list[tuple[int, int, str]]  # (family, type, comm)
    clone_flags: list[tuple[int, str]]  # (flags, comm)

    @property
    def names(self) -> list[str]:
        return sorted(self.roles)

    def only(self, role: str) -> list[str]:
        return sorted(name for name, roles in self.roles.items() if roles == {role})

    def runc_init_only(self) -> list[str]:
        return self.only("runc")


def parse_trace(text: str, cgroups: Mapping[str, Iterable[int]]) -> dict[str, Recording]:
    """One Recording per service, each from the cgroups of that service's containers."""
    return {name: parse_service(text, SERVICES[name], wanted) for name, wanted in cgroups.items()}


def parse_service(text: str, service: Service, cgroups: Iterable[int]) -> Recording:
    wanted = set(cgroups)
    numbers = syscall_numbers()
    calls: list[tuple[int, int, str, str]] = []  # (cgroup, tgid, comm, syscall name)
    sockets: list[tuple[int, int, str]] = []
    clones: list[tuple[int, str]] = []
    for line in text.splitlines():
        if m := re.fullmatch(r"@sys\[(\d+), (\d+), (-?\d+), (.*)\]: \d+", line):
            if int(m.group(1)) in wanted:
                number = int(m.group(3))
                if number not in numbers:
                    raise SeccompError(f"syscall number {number} is not in {UNISTD_HEADER}")
                calls.append((int(m.group(1)), int(m.group(2)), m.group(4), numbers[number]))
        elif m := re.fullmatch(r"@socket\[(\d+), (-?\d+), (-?\d+), (.*)\]: \d+", line):
            if int(m.group(1)) in wanted:
                sockets.append((int(m.group(2)), int(m.group(3)), m.group(4)))
        elif (m := re.fullmatch(r"@clone\[(\d+), (\d+), (.*)\]: \d+", line)) and int(
            m.group(1)
        ) in wanted:
            clones.append((int(m.group(2)), m.group(3)))
    if not calls:
        raise SeccompError(f"bpftrace recorded nothing in {service.name}'s cgroups")
    # The main process is the one docker-init forked and that then exec'd the service's program:
    # the one pid seen under both names. docker exec'd processes start as runc's init instead.
    comms: dict[tuple[int, int], set[str]] = defaultdict(set)
    for group, tgid, comm, _ in calls:
        comms[(group, tgid)].add(comm)
    mains = {key for key, seen in comms.items() if {"docker-init", service.main_comm} <= seen}
    if not mains:
        raise SeccompError(f"no {service.main_comm} forked by docker-init in {service.name}")
    roles: dict[str, set[str]] = defaultdict(set)
    for group, tgid, comm, name in calls:
        if comm == RUNC_COMM:
            role = "runc"
        elif comm == "docker-init":
            role = "docker-init"
        else:
            role = "main" if (group, tgid) in mains else "exec"
        roles[name].add(role)
    return Recording(service, dict(roles), sorted(set(sockets)), sorted(set(clones)))


def check_recording(recording: Recording) -> list[str]:
    """Things a reviewer must look at before generating the profile from this recording."""
    notes = []
    name = recording.service.name
    families = sorted({family for family, _, _ in recording.socket_calls})
    stray = [
        family_name(f)
        for f in families
        if f not in SOCKET_FAMILIES.values() and f not in SOCKET_FAMILIES_DENIED.get(name, {})
    ]
    if stray:
        notes.append(
            f"{name}: socket() called with families {stray}: `generate` refuses this recording "
            "until a person has decided"
        )
    for flags, comm in recording.clone_flags:
        if flags & CLONE_NEW_MASK:
            notes.append(f"{name}: clone with namespace flags {flags:#x} by {comm}")
    runc_only = set(recording.runc_init_only())
    left_out = not_allowed(name)
    unreviewed = runc_only - set(left_out) - set(RUNC_INIT_KEPT)
    if unreviewed:
        notes.append(
            f"{name}: seen only from runc's init, not reviewed (RUNC_INIT_ONLY, RUNC_INIT_KEPT "
            f"or SERVICE_DENIED in stack/seccomp/profile.py), so generate allows them: "
            f"{sorted(unreviewed)}"
        )
    used = sorted(
        syscall
        for syscall, roles in recording.roles.items()
        if roles - {"runc"}
        if syscall in left_out
    )
    for syscall in used:
        if syscall not in SERVICE_DENIED.get(name, {}):
            notes.append(
                f"{name}: {syscall} is used by {sorted(recording.roles[syscall])} but the "
                f"profile leaves it out ({left_out[syscall]}): decide in SERVICE_DENIED"
            )
    denied_families = SOCKET_FAMILIES_DENIED.get(name, {})
    for family in families:
        if family in denied_families:
            notes.append(f"{name}: socket family {family} seen and denied on purpose (reviewed)")
    return notes


def reviewed_lines(recording: Recording) -> list[str]:
    """The header's account of the reviewed decisions in stack/seccomp/profile.py that apply to
    this recording: what the profile leaves out although recorded, the socket families it
    denies although seen, and what it allows although not seen; each with its reason."""
    name = recording.service.name
    left_out = not_allowed(name)
    seen_families = {family for family, _, _ in recording.socket_calls}
    sections = [
        (
            "recorded, left out of the profile on purpose (RUNC_INIT_ONLY, SERVICE_DENIED)",
            {n: left_out[n] for n in recording.names if n in left_out},
        ),
        (
            "socket families seen, denied on purpose (SOCKET_FAMILIES_DENIED)",
            {
                family_name(f): reason
                for f, reason in SOCKET_FAMILIES_DENIED.get(name, {}).items()
                if f in seen_families
            },
        ),
        ("allowed although not always recorded (EXTRA_ALLOW)", EXTRA_ALLOW.get(name, {})),
    ]
    lines = []
    for title, reasons in sections:
        if not reasons:
            continue
        lines.append(f"# {title}:")
        for item, reason in sorted(reasons.items()):
            lines += textwrap.wrap(
                f"{item}: {reason}",
                width=98,
                initial_indent="# - ",
                subsequent_indent="#     ",
                break_on_hyphens=False,
            )
    return lines


def write_recorded(recording: Recording, path: Path, image: str, project: str) -> None:
    service = recording.service
    docker_version = docker("version", "--format", "{{.Server.Version}}").stdout.strip()
    runc_lines = run(
        ["runc", "--version"], env=HOST_ENVIRONMENT, capture=True, check=False
    ).stdout.splitlines()
    runc = runc_lines[0] if runc_lines else "runc ?"
    clone_flags = sorted({f"{flags:#x}" for flags, _ in recording.clone_flags})
    roles = service.roles()

    def wrap(text: str) -> list[str]:
        return textwrap.wrap(
            text,
            width=98,
            initial_indent="# ",
            subsequent_indent="#   ",
            break_on_hyphens=False,
        )

    header = [
        f"# Syscalls made by {service.name} (its main process, docker-init, docker exec'd",
        "# processes, runc's init) as recorded by `bin/qcstack seccomp record` (RUN-05).",
        f"# Input to `qcstack seccomp generate`, which writes {service.name}.json.",
        f"# date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}",
        f"# kernel: {os.uname().release}; docker: {docker_version}; {runc}",
        f"# image: {image}",
        *wrap(
            "how: bpftrace tracepoint:raw_syscalls:sys_enter filtered to the services' uids "
            f"and to the cgroups of the {service.name} containers (uid {service.uid}) "
            f"of compose project {project}, a test stack (compose.yaml + compose/test.yaml) "
            "whose services all ran under a permissive profile (clone3 -> ENOSYS as in "
            "production); bpftrace started before the stack and stopped after it was down. "
            f"Workload: {service.workload}"
        ),
        socket_families_line(family for family, _, _ in recording.socket_calls),
        *wrap(f"socket calls seen (family, type, comm): {recording.socket_calls}"),
        f"# clone flags seen: {clone_flags}",
    ]
    main = sorted(n for n, seen in recording.roles.items() if "main" in seen)
    for title, names in (
        (f"used by {roles['main']}", main),
        (f"used only by {roles['exec']}", recording.only("exec")),
        (f"used only by {roles['docker-init']}", recording.only("docker-init")),
        (
            f"used only by {roles['runc']} (reviewed in stack/seccomp/profile.py: RUNC_INIT_ONLY "
            "and SERVICE_DENIED are not allowed, RUNC_INIT_KEPT are)",
            recording.runc_init_only(),
        ),
    ):
        header += wrap(f"{title} ({len(names)}): {' '.join(names)}")
    header += reviewed_lines(recording)
    header.append(f"# {len(recording.names)} syscalls:")
    path.write_text("\n".join([*header, *recording.names]) + "\n", encoding="utf-8")
