"""The profiles' fixed rules and the pure step from a service's recording to its SERVICE.json."""

from __future__ import annotations

import functools
import json
import operator
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
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
"""The only families a profile may allow socket() for; each service gets those its recording
saw. Any other family in a recording stops `generate`: a person decides, never the tool."""

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
# Never allowed, in any service's profile.
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
    "getdents64": "runc calls it AFTER loading the filter: it lists /proc/self/fd to close the "
    "fds it leaked (the same CVE-2024-21626 fix, right after the fstatfs check)",
    "faccessat2": "the same permission check as access, which is allowed; glibc >= 2.33 "
    "implements faccessat() with it and falls back only on ENOSYS, so EPERM would make "
    "os.access(..., effective_ids=True) and friends silently answer False",
}

# Per service: recorded syscalls left out of its profile on purpose, each with its reason
# (on top of RUNC_INIT_ONLY). Each was checked by `verify` with the call denied.
SERVICE_DENIED: Mapping[str, Mapping[str, str]] = {
    "qc-mcp": {},
    "egress-proxy": {
        "getppid": "seen only from runc's init, before the filter; squid never calls it",
        "pipe2": "seen only from runc's init, before the filter; squid never calls it",
        "prctl": "besides runc before the filter (RUNC_INIT_ONLY), squid calls "
        "prctl(PR_SET_DUMPABLE, 1) at start (for core dumps; it logs a failure at debug level 2 "
        "only, and coredump_dir is none) and the Go healthcheck's runtime names its memory with "
        "prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME), ignoring failures. Neither needs it",
    },
    "gateway": {
        "getppid": "seen only from runc's init, before the filter; the gateway never calls it",
        "pipe2": "seen only from runc's init, before the filter; the gateway never calls it "
        "(asyncio's self-pipe is a socketpair)",
        "prctl": "besides runc before the filter (RUNC_INIT_ONLY), only the Go healthcheck's "
        "runtime, naming its memory with prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME) and ignoring "
        "failures, as in the proxy. Python and uvicorn never call it",
    },
    "gateway-relay": {
        "getcwd": "seen only from runc's init, before the filter; the relay never calls it",
        "getppid": "seen only from runc's init, before the filter; the relay never calls it",
        "prctl": "besides runc before the filter (RUNC_INIT_ONLY), the Go runtime of the relay "
        "and of the healthcheck names its memory with prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME) "
        "at start and ignores failures (the names only show in /proc/PID/maps)",
        "pipe2": "the relay's io.Copy between two TCP connections first tries Go's splice path "
        "(internal/poll.Splice), which takes a pipe from a pool made with pipe2. When pipe2 "
        "fails, Go makes no pipe and reports the copy as not handled; it then tries sendfile "
        "(see EXTRA_ALLOW), which the kernel refuses for a socket source, and copies with "
        "read/write: the same bytes, one more copy through user space, unmeasurable for MCP's "
        "small JSON messages. With pipe2 denied the relay never reaches splice",
        "splice": "Go's zero-copy path for the relay's TCP-to-TCP copy (see pipe2, which keeps "
        "the relay off it). Denied as well, so that nothing in the container can move page-cache "
        "pages into a pipe: the step behind Dirty Pipe (CVE-2022-0847), with the container's "
        "stdout and stderr pipes at hand. Denying splice alone would break the relay: Go treats "
        "any splice error but EINVAL as the copy's own error",
    },
    "otel-collector": {
        "getcwd": "seen only from runc's init, before the filter; the collector never calls it",
        "getppid": "seen only from runc's init, before the filter; the collector never calls it",
        "pipe2": "seen only from runc's init, before the filter; the collector's Go runtime "
        "polls with epoll and an eventfd (both allowed), and it starts no processes",
        "prctl": "besides runc before the filter (RUNC_INIT_ONLY), the Go runtime of the "
        "collector and of its healthcheck names its memory with prctl(PR_SET_VMA, "
        "PR_SET_VMA_ANON_NAME) at start and ignores failures, as in the relay",
    },
    "falco-responder": {
        "getppid": "seen only from runc's init, before the filter; the responder never calls it",
        "pipe2": "seen only from runc's init, before the filter; the responder never calls it "
        "(asyncio's self-pipe is a socketpair)",
        "prctl": "besides runc before the filter (RUNC_INIT_ONLY), only the Go healthcheck's "
        "runtime, naming its memory with prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME) and ignoring "
        "failures, as in the gateway. Python and uvicorn never call it",
    },
}

# Per service: syscalls allowed although the recording did not see them, each with its reason.
EXTRA_ALLOW: Mapping[str, Mapping[str, str]] = {
    "qc-mcp": {
        "mremap": "glibc's realloc of large (mmapped) blocks: Python lists and strings growing "
        "while the server parses a large API answer (a real account's project or backtest "
        "lists). The API double answers small, so the recording no longer sees it; the earlier "
        "one, with a 20000-project answer, did. Denied, glibc would fall back to copying",
    },
    "gateway": {
        "mremap": "glibc's realloc of large (mmapped) blocks: the gateway builds and parses "
        "qc-mcp's tool listing (some 300 KB of JSON) and large tool answers; whether a recording "
        "sees it depends on which buffers grow past glibc's mmap threshold in that run (seen in "
        "earlier recordings, not in the fast lane's). Denied, glibc would fall back to copying",
    },
    "egress-proxy": {
        "tgkill": "the Go healthcheck's runtime preempts a running goroutine by signalling its "
        "thread (SIGURG through tgkill). It happens only when a check runs long enough, so one "
        "recording in three missed it; denied, preemption would silently fall back to "
        "cooperative",
    },
    "gateway-relay": {
        "sendfile": "never recorded, because splice does the relay's copies when pipe2 works; "
        "with pipe2 denied (SERVICE_DENIED), Go 1.26 (the pinned toolchain) tries sendfile "
        "next (any syscall.Conn as the source). The kernel answers EINVAL for a socket "
        "source, which Go takes as 'not handled', and copies with read/write. Denied, the "
        "EPERM would end every relayed connection at once (Go treats any error but "
        "ENOSYS/EINVAL/EOPNOTSUPP as the copy's own): seen with strace, checked by `verify`",
        "tgkill": "the Go runtime of the relay and of its healthcheck preempts a long-running "
        "goroutine by signalling its thread (SIGURG through tgkill). Timing decides whether a "
        "recording sees it (as for the proxy's healthcheck); denied, preemption would silently "
        "fall back to cooperative",
    },
}

# Per service: socket() families the recording saw that the profile denies on purpose, each
# with its reason. Any other family outside SOCKET_FAMILIES stops `generate`.
SOCKET_FAMILIES_DENIED: Mapping[str, Mapping[int, str]] = {
    "qc-mcp": {},
    "gateway": {
        10: "AF_INET6: urllib3 (the HTTP client of the gateway's OTLP span exporter) probes "
        "for IPv6 once at import by opening an AF_INET6 socket to bind ::1. Denied, the probe "
        "fails and urllib3 takes the host for IPv4-only, which the stack's networks are; the "
        "gateway listens, resolves and connects over IPv4 alone",
    },
    "falco-responder": {
        10: "AF_INET6: urllib3 (under the OTLP span exporter, as in the gateway) probes for IPv6 "
        "once at import, one AF_INET6 socket per start (one in each of the recording's three "
        "responder containers). Denied, urllib3 takes the host for IPv4-only, which the "
        "stack's networks are; the responder listens on 0.0.0.0, and its calls to the gateway "
        "and the collector and its DNS lookups are IPv4",
    },
    "egress-proxy": {
        16: "AF_NETLINK (NETLINK_NETFILTER): squid is built with libnetfilter_conntrack and "
        "asks conntrack for the netfilter mark of every accepted connection (for "
        "clientside_mark ACLs and qos_flows, neither used here). nfnetlink answers only with "
        "CAP_NET_ADMIN, which is dropped, so the query fails anyway; squid logs that at debug "
        "level 2 and goes on. Denied here, so the kernel's netlink code is out of reach too",
    },
}


def not_allowed(service: str) -> dict[str, str]:
    """Recorded syscalls that `service`'s profile leaves out, with the reason for each."""
    return {**RUNC_INIT_ONLY, **SERVICE_DENIED.get(service, {})}


# The syscalls handled by argument rules below, never by the plain allow-list.
ARGUMENT_RULED = frozenset({"clone", "clone3", "socket"})

ARCH_MAP: list[dict[str, Any]] = [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": []}]


# The recorded file's header line that `generate` reads the socket families from.
SOCKET_FAMILIES_LINE = "# socket families seen (generate allows socket() for these alone):"


@dataclass(frozen=True)
class Recorded:
    """What a SERVICE.recorded.txt says: the syscall names and the socket families seen."""

    names: list[str]
    socket_families: list[str]


def family_name(number: int) -> str:
    """AF_UNIX, AF_INET or AF_INET6; any other family as its bare number."""
    names = {value: name for name, value in SOCKET_FAMILIES.items()}
    return names.get(number, str(number))


def socket_families_line(numbers: Iterable[int]) -> str:
    return " ".join([SOCKET_FAMILIES_LINE, *(family_name(n) for n in sorted(set(numbers)))])


def read_recorded(path: Path) -> Recorded:
    """Reads a SERVICE.recorded.txt: one syscall name a line, comments and blanks skipped, and
    the socket families from the header line that names them."""
    names = []
    families: list[str] | None = None
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith(SOCKET_FAMILIES_LINE):
            families = line.removeprefix(SOCKET_FAMILIES_LINE).split()
        stripped = line.split("#", 1)[0].strip()
        if stripped:
            names.append(stripped)
    if families is None:
        raise SeccompError(f"{path} has no line starting {SOCKET_FAMILIES_LINE!r}")
    return Recorded(names, families)


def allowed_syscalls(recorded: Iterable[str], service: str) -> list[str]:
    """The plain allow-list: recorded, less the calls the service leaves out (runc's init-only
    ones and its own) and argument-ruled ones, plus its reviewed extras."""
    recorded_set = set(recorded)
    forbidden = recorded_set & set(MUST_DENY)
    if forbidden:
        raise SeccompError(
            f"the recording contains must-deny syscalls {sorted(forbidden)}: find what calls "
            "them before allowing anything"
        )
    left_out = set(not_allowed(service)) | ARGUMENT_RULED
    return sorted((recorded_set - left_out) | set(EXTRA_ALLOW.get(service, {})))


def allowed_socket_families(recorded: Recorded, service: str) -> list[str]:
    """The families socket() is allowed for: those recorded, all within SOCKET_FAMILIES, less
    the ones the service's SOCKET_FAMILIES_DENIED leaves out on purpose."""
    denied = SOCKET_FAMILIES_DENIED.get(service, {})
    # A recording names the families it knows (AF_INET6) and numbers the others ("16").
    reviewed = {str(number) for number in denied} | {
        name for name, number in SOCKET_FAMILIES.items() if number in denied
    }
    stray = [f for f in recorded.socket_families if f not in SOCKET_FAMILIES and f not in reviewed]
    if stray:
        raise SeccompError(
            f"the recording saw socket() with families {stray} (numbers from <sys/socket.h>): "
            f"only {sorted(SOCKET_FAMILIES)} can be allowed. Find what creates them and decide; "
            "the tool does not widen the profile by itself"
        )
    allowed = (set(recorded.socket_families) & set(SOCKET_FAMILIES)) - reviewed
    return sorted(allowed, key=lambda f: SOCKET_FAMILIES[f])


def generate_profile(recorded: Recorded, service: str) -> dict[str, Any]:
    """Builds the Docker seccomp profile (as a dict) for `service` from its recording."""
    if not re.fullmatch(r"[a-z0-9-]+", service):
        raise SeccompError(f"{service!r} is not a service name")
    allowed = allowed_syscalls(recorded.names, service)
    syscalls: list[dict[str, Any]] = [
        {
            "names": allowed,
            "action": "SCMP_ACT_ALLOW",
            "comment": f"RUN-05: {service}'s syscalls, recorded from its real workload by "
            "`qcstack seccomp record`; see seccomp/README.md for why each is needed",
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
    for family in allowed_socket_families(recorded, service):
        number = SOCKET_FAMILIES[family]
        syscalls.append(
            {
                "names": ["socket"],
                "action": "SCMP_ACT_ALLOW",
                "args": [{"index": 0, "value": number, "valueTwo": 0, "op": "SCMP_CMP_EQ"}],
                "comment": f"{service}: socket({family}); every family not named here gets EPERM",
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
    """The exact text written to SERVICE.json."""
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
