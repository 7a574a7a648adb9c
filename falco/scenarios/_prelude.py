"""Shared by every trigger scenario: the harness runs this, then the scenario, as one script.

A scenario records each syscall it attempts with `attempted(...)` and ends with `finish()`, which
prints one JSON line: {"attempts": [...], **facts}. Each attempt names the syscall, its result
("SUCCESS" or the errno's name), the process that made it (as Falco's proc.* fields see it) and
what it was aimed at; the infra suites build the Falco event from it (stack/falco/events.py).
sys.argv[1] is the harness's context as JSON: {"containers": {service: id}, "canary": {...}}.
"""

import ctypes
import errno
import json
import os
import sys

CONTEXT = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
ATTEMPTS = []
FACTS = {}
LIBC = ctypes.CDLL(None, use_errno=True)


def errno_name(number):
    return errno.errorcode.get(number, str(number))


def this_process():
    """This process as Falco sees it: comm, the executable's resolved path, argv, uid."""
    with open("/proc/self/cmdline", "rb") as handle:
        argv = [a.decode(errors="replace")[:80] for a in handle.read().split(b"\0") if a]
    with open("/proc/self/comm") as handle:
        name = handle.read().strip()
    parent = None
    try:  # a process docker exec started has its parent outside the container: unknown here
        with open(f"/proc/{os.getppid()}/comm") as handle:
            parent = handle.read().strip()
    except OSError:
        pass
    return {
        "name": name,
        "exepath": os.readlink("/proc/self/exe"),
        "argv": argv[:3],
        "uid": os.getuid(),
        "pname": parent,
    }


def forked_child():
    """A child of this process before it execs: the same program, with this one as parent."""
    return {**this_process(), "pname": this_process()["name"]}


def attempted(syscall, error=None, process=None, **target):
    """Records one syscall: error is the errno it failed with, None when it succeeded."""
    ATTEMPTS.append(
        {
            "syscall": syscall,
            "result": "SUCCESS" if error is None else errno_name(error),
            "process": process or this_process(),
            **target,
        }
    )


def raw_syscall(number, *args):
    """A syscall by number through libc; returns (result, errno)."""
    ctypes.set_errno(0)
    result = LIBC.syscall(ctypes.c_long(number), *[ctypes.c_long(a) for a in args])
    return result, ctypes.get_errno()


def child_exec(path, argv):
    """execve(path) in a forked child; returns the errno it failed with, None if it ran.
    Record it with process=forked_child()."""
    pid = os.fork()
    if pid == 0:
        try:
            os.execv(path, argv)
        except OSError as error:
            os._exit(100 + error.errno)
    status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    return status - 100 if status >= 100 else None


def connect(address, port, wait_seconds=3):
    """A blocking connect() to address:port, bounded by SO_SNDTIMEO (an ioctl to make it
    non-blocking is not in every service's seccomp allow-list); records the syscall's result,
    EINPROGRESS when the wait ran out, and returns whether it connected."""
    import socket
    import struct

    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as client:
        timeout = struct.pack("ll", wait_seconds, 0)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeout)
        error = client.connect_ex((address, port)) or None
        attempted("connect", error, address=address, port=port, protocol="tcp")
        return error is None


def server_pid():
    """The container's main program: the lowest pid that is neither the init nor this probe."""
    for entry in sorted((e for e in os.listdir("/proc") if e.isdigit()), key=int):
        if int(entry) in (1, os.getpid()):
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                argv0 = handle.read().split(b"\0")[0]
        except OSError:
            continue
        if argv0 and not argv0.endswith(b"docker-init"):
            return int(entry)
    raise SystemExit("no main program found in this container")


def finish():
    print(json.dumps({"attempts": ATTEMPTS, **FACTS}), flush=True)
