"""DET-05 scenario: an intruder in qc-mcp tries the syscalls of an escape or of tracing.

Prevention: RUN-05, the seccomp allow-list answers each with EPERM.
"""

CONTROL = "DET-05"
RULE = "qcstack denied syscall attempted"
SERVICE = "qc-mcp"
RUNS = "container"

# x86_64 numbers, with arguments that succeed, or fail otherwise than EPERM, when seccomp allows.
SYSCALLS = {
    "ptrace": (101, 0, 0, 0, 0),  # PTRACE_TRACEME
    "unshare": (272, 0x10000000),  # CLONE_NEWUSER
    "setns": (308, -1, 0),
    "mount": (165, 0, 0, 0, 0, 0),
    "bpf": (321, 0, 0, 0),
}

if __name__ == "__main__":
    for name, (number, *args) in SYSCALLS.items():
        result, error = raw_syscall(number, *args)
        if result == 0 and name == "ptrace":
            os._exit(0)  # traced by our parent now: say nothing more (the test fails on no line)
        attempted(name, error if result < 0 else None)
    finish()
