"""The profile's fixed rules and the pure step from recorded syscall names to qc-mcp.json."""

from __future__ import annotations

import functools
import json
import operator
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from stack.seccomp import SeccompError

EPERM = 1
ENOSYS = 38
# The fixed rules: what the profile says beyond "allow what was recorded".
CLONE_NEW_FLAGS: Mapping[str, int] = {
    "CLONE_NEWTIME": 0x00000080,
    "CLONE_NEWNS": 0x00020000,
    "CLONE_NEWCGROUP": 0x02000000,
    "CLONE_NEWUTS": 0x04000000,
    "CLONE_NEWIPC": 0x08000000,
    "CLONE_NEWUSER": 0x10000000,
    "CLONE_NEWPID": 0x20000000,
    "CLONE_NEWNET": 0x40000000,
}
CLONE_NEW_MASK = functools.reduce(operator.or_, CLONE_NEW_FLAGS.values())  # 0x7E020080

SOCKET_FAMILIES: Mapping[str, int] = {"AF_UNIX": 1, "AF_INET": 2, "AF_INET6": 10}

# Named with an explicit EPERM rule although the default action denies them already: runc
# answers -ENOSYS (not EPERM) for any syscall numbered above the highest one the profile names,
# so naming these keeps the answer EPERM for the newer ones (fsopen..mount_setattr, io_uring).
MUST_DENY: Mapping[str, str] = {
    "ptrace": "reading/writing another process's memory and registers (credential theft, "
    "code injection into the server)",
    "process_vm_readv": "reading another process's memory (API token in the server's heap)",
    "process_vm_writev": "writing into another process's memory",
    "personality": "turning off ASLR (ADDR_NO_RANDOMIZE) or exotic exec domains",
    "unshare": "new user/mount/net namespaces: the first step of most container escapes",
    "setns": "joining another namespace",
    "mount": "mounting filesystems (needs a user namespace first; blocked twice)",
    "umount2": "unmounting masks over /proc and /sys",
    "fsopen": "new mount API: building a filesystem mount",
    "fsconfig": "new mount API: configuring a filesystem context",
    "fsmount": "new mount API: turning a context into a mount",
    "fspick": "new mount API: reconfiguring an existing mount",
    "move_mount": "new mount API: attaching a mount to the tree",
    "open_tree": "new mount API: cloning mount trees (bind mounts)",
    "mount_setattr": "changing mount flags (dropping ro/nosuid/noexec)",
    "pivot_root": "swapping the root filesystem",
    "keyctl": "kernel keyring: not namespaced, a long line of kernel bugs",
    "add_key": "kernel keyring: adding keys",
    "request_key": "kernel keyring: upcalls to the host",
    "bpf": "loading eBPF programs: kernel attack surface and information leaks",
    "perf_event_open": "performance counters: side channels and kernel bugs",
    "userfaultfd": "stalling the kernel on page faults to win use-after-free races",
    "io_uring_setup": "io_uring: bypasses seccomp for the operations it submits, many CVEs",
    "io_uring_enter": "io_uring: submitting operations",
    "io_uring_register": "io_uring: registering buffers and files",
    "kexec_load": "replacing the running kernel",
    "kexec_file_load": "replacing the running kernel",
    "init_module": "loading kernel modules",
    "finit_module": "loading kernel modules",
    "delete_module": "unloading kernel modules",
}

# Syscalls that the recording sees only from runc's own init process (Go, between setuid and
# execve). runc loads the seccomp filter just before execve (no-new-privileges is set), so
# these run before the filter exists; nothing in the container calls them afterwards. Reviewed
# by hand; `record` warns if the recorded runc-only set changes. Verified by starting the stack.
RUNC_INIT_ONLY: Mapping[str, str] = {
    "capget": "runc reads its capability sets before dropping them",
    "capset": "runc drops the capability sets after setuid (cap_drop: ALL)",
    "prctl": "runc sets no_new_privs, keep-caps and the bounding set, and loads this filter "
    "itself with PR_SET_SECCOMP: all before the filter exists",
}

# Seen only from runc's init, but kept, each with its reason.
RUNC_INIT_KEPT: Mapping[str, str] = {
    "fstatfs": "runc calls it AFTER loading the filter (it checks that /proc/self/fd is on "
    "procfs before closing leaked fds, the CVE-2024-21626 fix): without it the container "
    "dies at start with 'ensure /proc/self/fd is on procfs: operation not permitted'",
    "faccessat2": "the same permission check as access, which is allowed; glibc >= 2.33 "
    "implements faccessat() with it and falls back only on ENOSYS, so EPERM would make "
    "os.access(..., effective_ids=True) and friends silently answer False",
}

# Syscalls allowed although the recording did not see them, each with its reason.
EXTRA_ALLOW: Mapping[str, str] = {}

# The syscalls handled by argument rules below, never by the plain allow-list.
ARGUMENT_RULED = frozenset({"clone", "clone3", "socket"})

ARCH_MAP: list[dict[str, Any]] = [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": []}]


def read_recorded(path: Path) -> list[str]:
    """Returns the syscall names in a recorded-syscalls.txt (comments and blanks skipped)."""
    names = []
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.split("#", 1)[0].strip()
        if stripped:
            names.append(stripped)
    return names


def allowed_syscalls(recorded: Iterable[str]) -> list[str]:
    """The plain allow-list: recorded, less runc's init-only calls and argument-ruled ones."""
    recorded_set = set(recorded)
    forbidden = recorded_set & set(MUST_DENY)
    if forbidden:
        raise SeccompError(
            f"the recording contains must-deny syscalls {sorted(forbidden)}: find what calls "
            "them before allowing anything"
        )
    return sorted((recorded_set - set(RUNC_INIT_ONLY) - ARGUMENT_RULED) | set(EXTRA_ALLOW))


def generate_profile(recorded: Iterable[str]) -> dict[str, Any]:
    """Builds the Docker seccomp profile (as a dict) from the recorded syscall names."""
    allowed = allowed_syscalls(recorded)
    syscalls: list[dict[str, Any]] = [
        {
            "names": allowed,
            "action": "SCMP_ACT_ALLOW",
            "comment": "RUN-05: recorded from qc-mcp's real workload by `qcstack seccomp record`; "
            "see seccomp/README.md for why each is needed",
        },
        {
            "names": ["clone"],
            "action": "SCMP_ACT_ALLOW",
            "args": [
                {
                    "index": 0,
                    "value": CLONE_NEW_MASK,
                    "valueTwo": 0,
                    "op": "SCMP_CMP_MASKED_EQ",
                }
            ],
            "comment": "fork and threads only: no CLONE_NEW* namespace flag ("
            + "|".join(sorted(CLONE_NEW_FLAGS))
            + ")",
        },
        {
            "names": ["clone3"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": ENOSYS,
            "comment": "its flags are in memory seccomp cannot read: ENOSYS makes glibc fall "
            "back to clone, which the rule above checks",
        },
    ]
    for family, number in SOCKET_FAMILIES.items():
        syscalls.append(
            {
                "names": ["socket"],
                "action": "SCMP_ACT_ALLOW",
                "args": [{"index": 0, "value": number, "valueTwo": 0, "op": "SCMP_CMP_EQ"}],
                "comment": f"socket({family}) only; every other family gets EPERM",
            }
        )
    syscalls.append(
        {
            "names": sorted(MUST_DENY),
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": EPERM,
            "comment": "denied by default anyway; named so that runc answers EPERM rather than "
            "ENOSYS for the newer ones, and so that a reader sees them",
        }
    )
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": EPERM,
        "archMap": ARCH_MAP,
        "syscalls": syscalls,
    }


def render_profile(profile: Mapping[str, Any]) -> str:
    """The exact text written to qc-mcp.json."""
    return json.dumps(profile, indent=2) + "\n"


def recording_profile() -> dict[str, Any]:
    """The permissive profile to record under: allow all, but clone3 answers as in production."""
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "archMap": ARCH_MAP,
        "syscalls": [
            {
                "names": ["clone3"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": ENOSYS,
                "comment": "as in the real profile, so that glibc's fallback to clone is recorded",
            }
        ],
    }
