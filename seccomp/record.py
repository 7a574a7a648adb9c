"""Records qc-mcp's syscalls under a real workload and generates its seccomp allow-list (RUN-05)."""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import operator
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SECCOMP_DIR = REPO / "seccomp"
RECORDED_FILE = SECCOMP_DIR / "recorded-syscalls.txt"
PROFILE_FILE = SECCOMP_DIR / "qc-mcp.json"
COMPOSE_FILE = REPO / "compose" / "compose.yaml"
UNISTD_HEADER = Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h")

PROJECT = "qcstack-record"  # every container, network and secret here lives in this project
NETWORK = f"{PROJECT}_mcp"
SERVICE = "qc-mcp"
IMAGE = "qcstack/qc-mcp:" + os.environ.get("QCSTACK_IMAGE_TAG", "local")
APP_UID = 10001  # qc-mcp's uid: the only one bpftrace records
CLIENT_UID = 10002  # the MCP client container: not recorded
FAKE_API_UID = 10003  # the proxy + QuantConnect API double: not recorded
OWN_CONTAINERS = ("qcrec-client", "qcrec-api")

EPERM = 1
ENOSYS = 38

# ---------------------------------------------------------------------------------------------
# The fixed rules: what the profile says beyond "allow what was recorded".
# ---------------------------------------------------------------------------------------------

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

ARCH_MAP = [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": []}]


class RecordError(RuntimeError):
    """The recording or verification cannot go on; the message says why."""


# ---------------------------------------------------------------------------------------------
# generate: recorded-syscalls.txt + fixed rules -> qc-mcp.json
# ---------------------------------------------------------------------------------------------


def read_recorded(path: Path = RECORDED_FILE) -> list[str]:
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
        raise RecordError(
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
            "comment": "RUN-05: recorded from qc-mcp's real workload by seccomp/record.py; "
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


def cmd_generate(args: argparse.Namespace) -> int:
    text = render_profile(generate_profile(read_recorded(Path(args.recorded))))
    output = Path(args.output)
    if args.check:
        if output.read_text(encoding="utf-8") != text:
            print(
                f"{output} is not what `record.py generate` makes; regenerate it", file=sys.stderr
            )
            return 1
        print(f"{output} is up to date")
        return 0
    output.write_text(text, encoding="utf-8")
    allowed = allowed_syscalls(read_recorded(Path(args.recorded)))
    print(f"wrote {output}: {len(allowed)} syscalls allowed outright + clone/socket by argument")
    return 0


# ---------------------------------------------------------------------------------------------
# Workload sources: run inside containers (the qc-mcp image has python3 and no shell).
# ---------------------------------------------------------------------------------------------

CLIENT_SRC = r'''
"""MCP client workload: sessions that initialize, list tools and call a few of them."""
import asyncio, json, socket, sys, time
from mcp import ClientSession
from mcp.client.streamable_http import streamablehttp_client

CALLS = [
    ("read_mcp_server_version", {}),
    ("read_account", {}),
    ("list_projects", {}),
    ("read_latest_mcp_server_version", {}),
    ("read_project", {"model": {"projectId": 1}}),
    ("read_project", {"model": {"projectId": "not-a-number"}}),
    ("no_such_tool", {}),
]

async def session(url, calls):
    out = {"calls": []}
    async with streamablehttp_client(url) as (read, write, _), ClientSession(read, write) as s:
        await s.initialize()
        await s.send_ping()
        out["tools"] = sorted(t.name for t in (await s.list_tools()).tools)
        for method in (s.list_prompts, s.list_resources):
            try:
                await method()
            except Exception as error:
                out.setdefault("other_errors", []).append(repr(error)[:120])
        for name, arguments in calls:
            try:
                result = await asyncio.wait_for(s.call_tool(name, arguments), 90)
                text = " ".join(getattr(c, "text", "") for c in result.content)
                out["calls"].append([name, "error" if result.isError else "ok", text[:160]])
            except Exception as error:
                out["calls"].append([name, "exception", repr(error)[:160]])
    return out

async def main(url):
    host = url.split("/")[2].split(":")[0]
    for _ in range(30):  # Docker's DNS may need a moment for a just-created network
        try:
            socket.getaddrinfo(host, 8000)
            break
        except socket.gaierror:
            time.sleep(1)
    first = await session(url, CALLS)
    parallel = await asyncio.gather(*(session(url, CALLS[:3]) for _ in range(3)))
    print(json.dumps({"first": first, "parallel": parallel}))

asyncio.run(main(sys.argv[1]))
'''

FAKE_API_SRC = r'''
"""Recording-only HTTP CONNECT proxy + QuantConnect API double (self-made CA, never real)."""
import http.server, json, socket, socketserver, ssl, threading

class Api(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        # A large answer for project reads, as a big organisation's would be.
        projects = [{"projectId": i, "name": "p%d" % i} for i in range(20000)]
        body = json.dumps({"success": True, "errors": [], "versions": [],
                           "projects": projects if self.path.endswith("/projects/read") else [],
                           "organizationId": "qcrec", "card": None}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    do_GET = do_POST
    def log_message(self, *args):
        pass

class ThreadingHTTPS(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True

context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain("/certs/leaf.pem", "/certs/leaf.key")
api = ThreadingHTTPS(("127.0.0.1", 8443), Api)
api.socket = context.wrap_socket(api.socket, server_side=True)
threading.Thread(target=api.serve_forever, daemon=True).start()

def pump(source, sink):
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for s in (source, sink):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

class Proxy(socketserver.BaseRequestHandler):
    def handle(self):
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.request.recv(4096)
            if not chunk:
                return
            head += chunk
        words = head.split(b"\r\n", 1)[0].split()
        if len(words) < 2 or words[0] != b"CONNECT" or words[1] != b"www.quantconnect.com:443":
            self.request.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n"
                                 b"Connection: close\r\n\r\n")
            return
        upstream = socket.create_connection(("127.0.0.1", 8443))
        self.request.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        back = threading.Thread(target=pump, args=(upstream, self.request), daemon=True)
        back.start()
        pump(self.request, upstream)
        back.join(5)
        upstream.close()

class ThreadingTCP(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True

ThreadingTCP(("0.0.0.0", 3128), Proxy).serve_forever()
'''

# The benign probes the infra tests run with `docker exec <qc-mcp> python3 -c ...`. Each prints
# one JSON line and exits 0 when everything behaved as the hardening says it should.
PROBES: Mapping[str, str] = {
    "tmp_files": r"""
import errno, json, os, shutil, tempfile
out = {}
d = tempfile.mkdtemp(dir="/tmp")
p = os.path.join(d, "f.txt")
with open(p, "w") as f:
    f.write("x" * 10000); f.flush(); os.fsync(f.fileno())
os.rename(p, p + ".2"); os.stat(p + ".2"); os.chmod(p + ".2", 0o600); os.utime(p + ".2")
with open(p + ".2", "rb") as f:
    f.read(); f.seek(0); f.read(10)
os.truncate(p + ".2", 10); os.symlink(p + ".2", p + ".ln"); os.readlink(p + ".ln")
os.makedirs(os.path.join(d, "a", "b")); out["listdir"] = sorted(os.listdir(d))
out["access"] = os.access(p + ".2", os.W_OK)
filler = os.path.join(d, "fill")
try:
    with open(filler, "wb") as f:
        for _ in range(64):
            f.write(b"\0" * (1 << 20)); f.flush()
except OSError as e:
    out["fill"] = errno.errorcode[e.errno]
st = os.statvfs("/tmp"); out["tmp_blocks"] = st.f_blocks
shutil.rmtree(d)
for target in ("/probe", "/app/probe", "/usr/lib/probe", "/etc/passwd"):
    try:
        open(target, "a").close(); out[target] = "written"
    except OSError as e:
        out[target] = errno.errorcode[e.errno]
for call in (lambda: os.mkdir("/probe"), lambda: os.chmod("/app/launch.py", 0o777),
             lambda: os.unlink("/app/launch.py"), lambda: os.rename("/app", "/app2")):
    try:
        call(); out.setdefault("writes", []).append("done")
    except OSError as e:
        out.setdefault("writes", []).append(errno.errorcode[e.errno])
print(json.dumps(out))
assert out["/probe"] == "EROFS" and out.get("fill") == "ENOSPC"
""",
    "proc": r"""
import errno, json, os, resource
out = {}
for path in ("/proc/self/status", "/proc/1/status", "/proc/self/mountinfo", "/proc/self/cgroup",
             "/proc/self/limits", "/proc/1/cmdline", "/proc/self/environ", "/proc/1/environ",
             "/proc/loadavg", "/proc/meminfo", "/proc/self/stat", "/sys/fs/cgroup/pids/pids.max"):
    try:
        with open(path, "rb") as f:
            out[path] = len(f.read())
    except OSError as e:
        out[path] = errno.errorcode[e.errno]
status = open("/proc/self/status").read()
out["caps"] = [l for l in status.splitlines() if l.startswith(("CapEff", "NoNewPrivs", "Seccomp"))]
out["pids"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
out["exe"] = os.readlink("/proc/self/exe"); out["fds"] = os.listdir("/proc/self/fd")
out["ids"] = [os.getuid(), os.geteuid(), os.getgid(), os.getegid(), os.getgroups(),
              os.getpid(), os.getppid(), os.getpgrp(), os.getsid(0)]
out["uname"] = list(os.uname()); out["cwd"] = os.getcwd(); out["cpus"] = os.cpu_count()
out["affinity"] = sorted(os.sched_getaffinity(0)); out["load"] = os.getloadavg()
out["rusage"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out["umask"] = os.umask(0o022); out["prio"] = os.getpriority(os.PRIO_PROCESS, 0)
for path, data in (("/proc/sys/kernel/hostname", "x"), ("/proc/sysrq-trigger", "h"),
                   ("/proc/self/oom_score_adj", "-1000")):
    try:
        with open(path, "w") as f:
            f.write(data)
        out[path] = "written"
    except OSError as e:
        out[path] = errno.errorcode[e.errno]
print(json.dumps(out))
""",
    "fork_limit": r"""
import errno, json, os, time
r, w = os.pipe()
kids, error = [], None
for _ in range(512):
    try:
        pid = os.fork()
    except OSError as e:
        error = errno.errorcode[e.errno]
        break
    if pid == 0:
        os.close(w); os.read(r, 1); os._exit(0)
    kids.append(pid)
os.close(w)
codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in kids]
try:
    os.waitpid(-1, os.WNOHANG)
except ChildProcessError:
    pass
print(json.dumps({"forked": len(kids), "error": error, "exit_codes": sorted(set(codes))}))
assert error == "EAGAIN"
""",
    "fd_limit": r"""
import errno, json, os, resource, socket
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
fds, error = [], None
while True:
    try:
        fds.append(os.open("/dev/null", os.O_RDONLY))
    except OSError as e:
        error = errno.errorcode[e.errno]
        break
for fd in fds:
    os.close(fd)
socks = []
try:
    while True:
        socks.append(socket.socket())
except OSError as e:
    sock_error = errno.errorcode[e.errno]
for s in socks:
    s.close()
try:
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard + 1, hard + 1)); raised = "raised"
except (ValueError, OSError) as e:
    raised = type(e).__name__
resource.setrlimit(resource.RLIMIT_NOFILE, (soft // 2, hard))
print(json.dumps({"soft": soft, "hard": hard, "opened": len(fds), "error": error,
                  "socket_error": sock_error, "raise_hard": raised,
                  "nproc": resource.getrlimit(resource.RLIMIT_NPROC)}))
assert error == "EMFILE"
""",
    "exec_tmp": r"""
import errno, json, os, shutil, subprocess, sys
out = {}
shutil.copy("/usr/bin/python3", "/tmp/qcrec-exec"); os.chmod("/tmp/qcrec-exec", 0o755)
try:
    subprocess.run(["/tmp/qcrec-exec", "-c", "pass"], check=False); out["subprocess"] = "ran"
except OSError as e:
    out["subprocess"] = errno.errorcode[e.errno]
pid = os.fork()
if pid == 0:
    try:
        os.execv("/tmp/qcrec-exec", ["/tmp/qcrec-exec", "-c", "pass"])
    except OSError as e:
        os._exit(e.errno)
out["execv"] = errno.errorcode.get(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), "ran")
done = subprocess.run([sys.executable, "-c", "print(6 * 7)"], capture_output=True, text=True)
out["python"] = done.stdout.strip()
try:
    subprocess.run(["/bin/sh", "-c", "id"]); out["sh"] = "ran"
except OSError as e:
    out["sh"] = errno.errorcode[e.errno]
os.unlink("/tmp/qcrec-exec")
print(json.dumps(out))
assert out["subprocess"] == "EACCES" and out["execv"] == "EACCES" and out["python"] == "42"
""",
    "setuid": r"""
import errno, json, os
out = {}
for name, call in (("setuid", lambda: os.setuid(0)), ("setgid", lambda: os.setgid(0)),
                   ("seteuid", lambda: os.seteuid(0)), ("setegid", lambda: os.setegid(0)),
                   ("setreuid", lambda: os.setreuid(0, 0)), ("setregid", lambda: os.setregid(0, 0)),
                   ("setresuid", lambda: os.setresuid(0, 0, 0)),
                   ("setresgid", lambda: os.setresgid(0, 0, 0)),
                   ("setgroups", lambda: os.setgroups([0]))):
    try:
        call(); out[name] = "ok"
    except OSError as e:
        out[name] = errno.errorcode[e.errno]
out["ids"] = [os.getresuid(), os.getresgid()]
print(json.dumps(out))
assert out["setuid"] == "EPERM" and os.getuid() != 0
""",
    "sockets": r"""
import errno, json, socket
out = {}
def attempt(label, family, kind, address, payload=b"GET / HTTP/1.0\r\n\r\n"):
    s = socket.socket(family, kind)
    s.settimeout(3)
    try:
        s.connect(address); s.sendall(payload)
        out[label] = "connected:" + str(len(s.recv(512)))
    except socket.timeout:
        out[label] = "timeout"
    except OSError as e:
        out[label] = errno.errorcode.get(e.errno, str(e))
    finally:
        s.close()
attempt("tcp4_server", socket.AF_INET, socket.SOCK_STREAM, ("127.0.0.1", 8000))
attempt("tcp4_closed", socket.AF_INET, socket.SOCK_STREAM, ("127.0.0.1", 1))
attempt("tcp6_loopback", socket.AF_INET6, socket.SOCK_STREAM, ("::1", 8000))
attempt("udp4", socket.AF_INET, socket.SOCK_DGRAM, ("127.0.0.1", 9))
attempt("udp6", socket.AF_INET6, socket.SOCK_DGRAM, ("::1", 9))
attempt("tcp_api_double", socket.AF_INET, socket.SOCK_STREAM, ("qcrec-api", 3128))
own = socket.gethostbyname(socket.gethostname())  # an unused address on our own network:
attempt("tcp_no_host", socket.AF_INET, socket.SOCK_STREAM, (own.rsplit(".", 1)[0] + ".250", 443))
attempt("tcp_api_closed", socket.AF_INET, socket.SOCK_STREAM, ("qcrec-api", 1))
try:
    socket.create_connection(("canary.invalid", 443), 3); out["dns_fail"] = "resolved"
except OSError as e:
    out["dns_fail"] = type(e).__name__
out["dns_ok"] = sorted({a[4][0] for a in socket.getaddrinfo("qc-mcp", 8000)})
out["dns_v6"] = [a[4][0] for a in socket.getaddrinfo("localhost", 80, socket.AF_INET6)]
out["hostname"] = socket.gethostname(); out["byname"] = socket.gethostbyname("localhost")
a, b = socket.socketpair(); a.sendall(b"x"); out["pair"] = b.recv(1).decode(); a.close(); b.close()
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); server.bind("/tmp/qcrec.sock")
server.listen(1); client = socket.socket(socket.AF_UNIX); client.connect("/tmp/qcrec.sock")
conn, _ = server.accept(); client.sendall(b"y"); out["unix"] = conn.recv(1).decode()
for s in (conn, client, server):
    s.close()
import os; os.unlink("/tmp/qcrec.sock")
listener = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    listener.bind(("::", 0)); listener.listen(); out["listen6"] = listener.getsockname()[1]
except OSError as e:
    out["listen6"] = errno.errorcode[e.errno]
listener.close()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", 0))
u.sendto(b"z", ("127.0.0.1", u.getsockname()[1])); out["udp_self"] = u.recvfrom(8)[0].decode()
u.close()
print(json.dumps(out))
""",
    "ctypes": r"""
import ctypes, ctypes.util, json, os
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
out = {"getpid": libc.syscall(39) == os.getpid(), "getuid": libc.syscall(102)}
libc6 = ctypes.CDLL("libc.so.6", use_errno=True)
out["find_library"] = ctypes.util.find_library("c")
buf = ctypes.create_string_buffer(64); libc6.gethostname(buf, 64); out["host"] = buf.value.decode()
ctypes.set_errno(0); out["errno"] = ctypes.get_errno()
callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)(lambda x: x + 1); out["cb"] = callback(1)
print(json.dumps(out))
assert out["getpid"]
""",
    "threads_signals": r"""
import concurrent.futures, json, os, signal, threading, time
out = {}
results = []
threads = [threading.Thread(target=lambda i=i: results.append(i)) for i in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
with concurrent.futures.ThreadPoolExecutor(4) as pool:
    out["pool"] = sum(pool.map(lambda x: x * x, range(16)))
event = threading.Event(); out["event"] = event.wait(0.05)
lock = threading.Lock(); out["lock"] = lock.acquire(timeout=0.05)
got = []
signal.signal(signal.SIGUSR1, lambda *a: got.append("usr1"))
os.kill(os.getpid(), signal.SIGUSR1)
signal.signal(signal.SIGALRM, lambda *a: got.append("alrm"))
signal.setitimer(signal.ITIMER_REAL, 0.05)
time.sleep(0.2); signal.alarm(0)
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2}); os.kill(os.getpid(), signal.SIGUSR2)
out["sigwait"] = signal.sigtimedwait({signal.SIGUSR2}, 1).si_signo
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGUSR2})
pid = os.fork()
if pid == 0:
    time.sleep(30); os._exit(0)
os.kill(pid, signal.SIGTERM); out["child"] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
os.kill(1, 0)
out["threads"] = len(results); out["signals"] = got
out["clock"] = [time.time() > 0, time.monotonic() > 0, time.process_time() >= 0,
                time.thread_time() >= 0, time.clock_getres(time.CLOCK_MONOTONIC)]
out["random"] = len(os.urandom(16))
print(json.dumps(out))
assert out["threads"] == 8 and "usr1" in got and out["child"] == -signal.SIGTERM
""",
    "orphans": r"""
import json, os, time
pid = os.fork()
if pid == 0:
    os.setsid()
    if os.fork() == 0:
        time.sleep(0.5); os._exit(0)
    os._exit(0)
os.waitpid(pid, 0)
time.sleep(2)
zombies = []
for p in os.listdir("/proc"):
    if p.isdigit():
        try:
            state = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state == "Z":
            zombies.append(int(p))
print(json.dumps({"zombies": zombies}))
assert not zombies
""",
    "proc_fd_write": r"""
import json, os
out = {}
server = None
for p in os.listdir("/proc"):
    if p.isdigit() and int(p) != os.getpid():
        try:
            argv = open(f"/proc/{p}/cmdline", "rb").read().split(b"\0")
        except OSError:
            continue
        if len(argv) > 1 and argv[1] == b"/app/launch.py":
            server = int(p)
for path in (f"/proc/{server}/fd/1", "/proc/1/fd/2", "/proc/self/fd/1"):
    try:
        with open(path, "w") as f:
            f.write("qcrec probe: a line written through " + path + "\n")
        out[path] = "written"
    except OSError as e:
        out[path] = str(e)
print(json.dumps(out))
""",
}

# Verification only (never part of the recording): each denied call must fail as designed.
DENY_CHECK_SRC = r"""
import ctypes, errno, json, os, socket, sys, threading
numbers = json.loads(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def call(nr, *args):
    ctypes.set_errno(0)
    ret = libc.syscall(ctypes.c_long(nr), *(ctypes.c_long(a) for a in args))
    return ret, ctypes.get_errno()
def in_child(nr, *args):
    # Runs the call in a forked child so that an allowed clone or a killing action stays there.
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        ret, err = call(nr, *args)
        if ret == 0:  # the new process of an allowed clone
            os._exit(0)
        if ret > 0:  # its parent
            os.waitpid(ret, 0)
        os.write(w, json.dumps([ret, err]).encode()); os._exit(0)
    os.close(w)
    data = os.read(r, 100); os.close(r)
    status = os.waitpid(pid, 0)[1]
    if os.WIFSIGNALED(status):
        return "killed by signal %d" % os.WTERMSIG(status)
    if not data:
        return "succeeded"
    ret, err = json.loads(data)
    if ret > 0 and nr == numbers["clone"]:
        return "succeeded"
    return errno.errorcode.get(err, str(err)) if ret == -1 else "returned %d" % ret
out = {"denied": {}, "argument_rules": {}, "allowed": {}}
for name, nr in sorted(numbers["deny"].items()):
    out["denied"][name] = in_child(nr, 0, 0, 0, 0, 0, 0)
rules = out["argument_rules"]
rules["clone3"] = in_child(numbers["clone3"], 0, 0)
for flag, value in sorted(numbers["clone_new"].items()):
    rules["clone " + flag] = in_child(numbers["clone"], value | 17, 0, 0, 0, 0)
for family, value in (("AF_NETLINK", 16), ("AF_PACKET", 17), ("AF_KEY", 15), ("AF_ALG", 38),
                      ("AF_VSOCK", 40), ("AF_BLUETOOTH", 31), ("AF_XDP", 44), ("AF_TIPC", 30)):
    try:
        kind = socket.SOCK_RAW if value in (16, 17) else socket.SOCK_SEQPACKET
        socket.socket(value, kind).close()
        rules["socket " + family] = "created"
    except OSError as e:
        rules["socket " + family] = errno.errorcode.get(e.errno, str(e))
rules["x32 getpid"] = in_child(0x40000000 | 39)
allowed = out["allowed"]
pid = os.fork()
if pid == 0:
    os._exit(7)
allowed["fork"] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 7
box = []
t = threading.Thread(target=box.append, args=(1,)); t.start(); t.join()
allowed["thread"] = box == [1]
allowed["clone plain"] = in_child(numbers["clone"], 17, 0, 0, 0, 0)
for family in (socket.AF_UNIX, socket.AF_INET, socket.AF_INET6):
    socket.socket(family, socket.SOCK_STREAM).close()
    allowed["socket " + family.name] = True
print(json.dumps(out))
"""


# ---------------------------------------------------------------------------------------------
# Running things
# ---------------------------------------------------------------------------------------------


def log(message: str) -> None:
    print(f"[record] {message}", file=sys.stderr, flush=True)


def run(
    argv: Sequence[str | Path],
    *,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    capture: bool = True,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    args = [str(a) for a in argv]
    result = subprocess.run(
        args,
        env=None if env is None else {**os.environ, **env},
        capture_output=capture,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        raise RecordError(
            f"{' '.join(args[:6])}... exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
    return result


@dataclass
class Workdir:
    """A private folder: secrets, profile, certificates, workload scripts, compose override."""

    root: Path
    profile_dir: Path
    secrets: Path = field(init=False)
    certs: Path = field(init=False)
    scripts: Path = field(init=False)
    override: Path = field(init=False)

    def __post_init__(self) -> None:
        self.secrets = self.root / "secrets"
        self.certs = self.root / "certs"
        self.scripts = self.root / "scripts"
        self.override = self.root / "record-override.json"

    def prepare(self) -> None:
        os.chmod(self.root, 0o755)  # noqa: S103 -- the client and API double uids read in here
        for folder in (self.secrets, self.certs, self.scripts):
            folder.mkdir(mode=0o755)
        for name, value in (("qc_user_id", "12345"), ("qc_api_token", "canary-token")):
            secret = self.secrets / name
            secret.write_text(value, encoding="utf-8")
            os.chown(secret, APP_UID, APP_UID)
            secret.chmod(0o400)
        for name, source in (("client.py", CLIENT_SRC), ("fake_api.py", FAKE_API_SRC)):
            (self.scripts / name).write_text(source, encoding="utf-8")
            (self.scripts / name).chmod(0o644)
        self._make_certificates()
        override = {
            "services": {
                SERVICE: {
                    "environment": {
                        "HTTPS_PROXY": "http://qcrec-api:3128",
                        "SSL_CERT_FILE": "/run/secrets/qcrec_test_ca",
                    },
                    "secrets": ["qc_user_id", "qc_api_token", "qcrec_test_ca"],
                    "depends_on": ["qcrec-api"],
                },
                "qcrec-api": {
                    "image": IMAGE,
                    "container_name": "qcrec-api",
                    "user": f"{FAKE_API_UID}:{FAKE_API_UID}",
                    "entrypoint": ["/usr/bin/python3", "/qcrec/fake_api.py"],
                    "read_only": True,
                    "cap_drop": ["ALL"],
                    "security_opt": ["no-new-privileges:true"],
                    "volumes": [f"{self.scripts}:/qcrec:ro", f"{self.certs}:/certs:ro"],
                    "networks": ["mcp"],
                },
            },
            "secrets": {"qcrec_test_ca": {"file": str(self.certs / "ca.pem")}},
        }
        self.override.write_text(json.dumps(override, indent=2), encoding="utf-8")

    def _make_certificates(self) -> None:
        """A throwaway CA and a www.quantconnect.com certificate for the API double."""
        c = self.certs
        (c / "leaf.ext").write_text(
            "subjectAltName=DNS:www.quantconnect.com\nbasicConstraints=CA:FALSE\n"
            "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
            encoding="utf-8",
        )
        openssl = ["openssl"]
        run(
            [*openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-keyout", c / "ca.key", "-out", c / "ca.pem", "-subj", "/CN=qcstack-record test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign"]
        )  # fmt: skip
        run(
            [*openssl, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", c / "leaf.key",
             "-out", c / "leaf.csr", "-subj", "/CN=www.quantconnect.com"]
        )  # fmt: skip
        run(
            [*openssl, "x509", "-req", "-in", c / "leaf.csr", "-CA", c / "ca.pem",
             "-CAkey", c / "ca.key", "-CAcreateserial", "-days", "2", "-out", c / "leaf.pem",
             "-extfile", c / "leaf.ext"]
        )  # fmt: skip
        for item in c.iterdir():
            item.chmod(0o444)  # test-only material, readable by the API double's uid


class Stack:
    """The compose project qcstack-record, with one seccomp profile for qc-mcp."""

    def __init__(self, work: Workdir) -> None:
        self.work = work
        self.env = {
            "QCSTACK_SECRETS_DIR": str(work.secrets),
            "QCSTACK_SECCOMP_DIR": str(work.profile_dir),
        }

    def compose(self, *args: str, proxy: bool, timeout: float = 300) -> str:
        files = ["-f", str(COMPOSE_FILE)]
        if proxy:
            files += ["-f", str(self.work.override)]
        argv = ["docker", "compose", "-p", PROJECT, *files, *args]
        return run(argv, env=self.env, timeout=timeout).stdout

    def down(self, *, proxy: bool) -> None:
        self.compose("down", "--remove-orphans", "--timeout", "15", proxy=proxy)

    def stop(self, container: str, *, proxy: bool) -> None:
        """Stops qc-mcp the way Docker does (SIGTERM to docker-init), checks how it ended, downs."""
        self.compose("stop", "--timeout", "15", SERVICE, proxy=proxy)
        state = json.loads(run(["docker", "inspect", "-f", "{{json .State}}", container]).stdout)
        log(f"qc-mcp stopped: exit code {state['ExitCode']}, OOMKilled {state['OOMKilled']}")
        if state["OOMKilled"] or state["ExitCode"] not in (0, 143):
            raise RecordError(f"qc-mcp did not stop cleanly: {state}")
        self.down(proxy=proxy)

    def up(self, *, proxy: bool) -> str:
        try:
            self.compose("up", "-d", "--wait", "--wait-timeout", "120", proxy=proxy, timeout=180)
        except RecordError as error:
            logs = self.compose("logs", "--no-color", "--tail", "40", proxy=proxy)
            raise RecordError(f"{error}\nlogs:\n{logs}") from error
        container = self.compose("ps", "-q", SERVICE, proxy=proxy).strip()
        if not container:
            raise RecordError("qc-mcp did not start")
        return container


def remove_leftovers(stack: Stack) -> None:
    """Starts clean: our compose project down, our named containers gone (only ours)."""
    stack.down(proxy=True)
    for name in OWN_CONTAINERS:
        found = run(["docker", "ps", "-aq", "--filter", f"name=^{name}$"]).stdout.strip()
        if found:
            run(["docker", "rm", "-f", name])


def container_pid(container: str) -> int:
    """The host pid of the container's first process (docker-init)."""
    return int(run(["docker", "inspect", "-f", "{{.State.Pid}}", container]).stdout.strip())


def pid_namespace(container: str) -> int:
    link = os.readlink(f"/proc/{container_pid(container)}/ns/pid")
    match = re.fullmatch(r"pid:\[(\d+)\]", link)
    if not match:
        raise RecordError(f"unexpected pid namespace link {link}")
    return int(match.group(1))


def wait_for_healthchecks(container: str, count: int, timeout: float = 60) -> int:
    """Waits until Docker has run `count` healthchecks (each a docker exec of python3)."""
    deadline = time.monotonic() + timeout
    seen = 0
    while time.monotonic() < deadline:
        raw = run(["docker", "inspect", "-f", "{{json .State.Health}}", container]).stdout
        health = json.loads(raw) or {}
        seen = len(health.get("Log") or [])
        if seen >= count:
            return seen
        time.sleep(2)
    raise RecordError(f"only {seen} healthchecks ran in {timeout:.0f}s")


def run_client(work: Workdir, *, expect_success: bool) -> dict[str, Any]:
    result = run(
        ["docker", "run", "--rm", "--name", "qcrec-client", "--network", NETWORK,
         "--user", f"{CLIENT_UID}:{CLIENT_UID}", "--read-only", "--cap-drop", "ALL",
         "--security-opt", "no-new-privileges", "-v", f"{work.scripts}:/qcrec:ro",
         "--entrypoint", "/usr/bin/python3", IMAGE, "/qcrec/client.py",
         f"http://{SERVICE}:8000/mcp"],
        timeout=600,
    )  # fmt: skip
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    sessions = [report["first"], *report["parallel"]]
    for session in sessions:
        if len(session["tools"]) != 64:
            raise RecordError(f"expected 64 tools, got {len(session['tools'])}")
    calls = {name: status for name, status, _ in report["first"]["calls"]}
    for name, status, text in report["first"]["calls"]:
        log(f"  {name}: {status}: {text[:110]}")
    log(f"client: 64 tools x {len(sessions)} sessions; first session calls: {calls}")
    if calls["read_mcp_server_version"] != "ok":
        raise RecordError(f"read_mcp_server_version failed: {report['first']['calls']}")
    if expect_success and calls["read_account"] != "ok":
        raise RecordError(f"read_account through the API double failed: {report['first']}")
    return report


def run_probes(container: str) -> dict[str, str]:
    results = {}
    for name, source in PROBES.items():
        done = run(
            ["docker", "exec", container, "/usr/bin/python3", "-c", source],
            check=False,
            timeout=120,
        )
        if done.returncode != 0:
            raise RecordError(
                f"probe {name} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
            )
        results[name] = done.stdout.strip()
        log(f"probe {name}: {results[name][:300]}")
    return results


def stop_and_continue(container: str) -> None:
    """SIGSTOP then SIGCONT to every process of the container, as a debugger or a freeze would.

    A timed futex wait interrupted this way resumes through restart_syscall, which the kernel
    makes the process call: the docker exec'd sleeper must still finish its wait normally.
    """
    namespace = os.readlink(f"/proc/{container_pid(container)}/ns/pid")
    sleeper = subprocess.Popen(
        ["docker", "exec", container, "/usr/bin/python3", "-c",
         "import threading; threading.Event().wait(3.5); print('slept')"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    time.sleep(1.5)
    members = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and os.readlink(entry / "ns" / "pid") == namespace:
                members.append(int(entry.name))
        except OSError:
            continue
    for pid in members:
        os.kill(pid, signal.SIGSTOP)
    time.sleep(1)
    for pid in members:
        os.kill(pid, signal.SIGCONT)
    out, err = sleeper.communicate(timeout=60)
    if sleeper.returncode != 0 or out.strip() != "slept":
        raise RecordError(f"sleep interrupted by SIGSTOP/SIGCONT failed: {out}{err}")
    log(f"SIGSTOP/SIGCONT of {len(members)} processes: the interrupted sleep resumed")


def drive_workload(stack: Stack, phase_two_extra: Callable[[str], None] | None = None) -> list[int]:
    """Both phases of the workload; returns the pid namespaces of the qc-mcp containers."""
    namespaces = []
    log("phase 1: compose.yaml as is (no proxy: outbound calls fail at DNS)")
    container = stack.up(proxy=False)
    namespaces.append(pid_namespace(container))
    run_client(stack.work, expect_success=False)
    wait_for_healthchecks(container, 3)
    stack.stop(container, proxy=False)

    log("phase 2: with HTTPS_PROXY to the API double (full TLS round trip), plus probes")
    container = stack.up(proxy=True)
    namespaces.append(pid_namespace(container))
    run_client(stack.work, expect_success=True)
    run_probes(container)
    if phase_two_extra is not None:
        phase_two_extra(container)
    log("docker pause/unpause (as a kill switch might): sleeping calls resume")
    run(["docker", "pause", container])
    time.sleep(2)
    run(["docker", "unpause", container])
    stop_and_continue(container)
    run_client(stack.work, expect_success=True)
    wait_for_healthchecks(container, 3)
    stack.stop(container, proxy=True)
    return namespaces


# ---------------------------------------------------------------------------------------------
# record: bpftrace around the workload
# ---------------------------------------------------------------------------------------------

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

RECORDING_PROFILE = {
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


class Tracer:
    """bpftrace counting every syscall made as uid 10001, keyed by pid namespace and comm."""

    def __init__(self, output: Path) -> None:
        self.output = output
        self.stderr = output.with_suffix(".err")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        tracing = Path("/sys/kernel/tracing")
        if not (tracing / "events").is_dir():
            run(["mount", "-t", "tracefs", "nodev", str(tracing)])
        with self.output.open("wb") as out, self.stderr.open("wb") as err:
            self.process = subprocess.Popen(
                ["bpftrace", "-B", "none", "-e", BPFTRACE_PROGRAM],
                stdout=out,
                stderr=err,
                env={**os.environ, "BPFTRACE_MAP_KEYS_MAX": "65536"},
            )
        deadline = time.monotonic() + 60
        while b"qcrec-tracer-ready" not in self.output.read_bytes():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RecordError(f"bpftrace did not start: {self.stderr.read_text()}")
            time.sleep(0.2)
        log("bpftrace attached")

    def stop(self) -> str:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            self.process.wait(timeout=120)
        return self.output.read_text(encoding="utf-8", errors="replace")


def syscall_numbers() -> dict[int, str]:
    numbers = dict(NEWER_SYSCALLS)
    pattern = re.compile(r"#define __NR_(\w+) (\d+)")
    for match in pattern.finditer(UNISTD_HEADER.read_text(encoding="utf-8")):
        numbers[int(match.group(2))] = match.group(1)
    return numbers


RUNC_COMM = "runc:[2:INIT]"
ROLES = {
    "server": "the MCP server process (python3 /app/launch.py)",
    "docker-init": "docker-init (tini), PID 1",
    "exec": "docker exec'd python3: healthchecks and the probes",
    "runc": "runc's init, before execve",
}


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
                    raise RecordError(f"syscall number {number} is not in {UNISTD_HEADER}")
                calls.append((int(m.group(1)), int(m.group(2)), m.group(4), numbers[number]))
        elif m := re.fullmatch(r"@socket\[(\d+), (-?\d+), (-?\d+)\]: \d+", line):
            if int(m.group(1)) in wanted:
                sockets.append((int(m.group(2)), int(m.group(3))))
        elif (m := re.fullmatch(r"@clone\[(\d+), (\d+), (.*)\]: \d+", line)) and int(
            m.group(1)
        ) in wanted:
            clones.append((int(m.group(2)), m.group(3)))
    if not calls:
        raise RecordError("bpftrace recorded nothing in qc-mcp's pid namespaces")
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


def write_recorded(recording: Recording, path: Path = RECORDED_FILE) -> None:
    docker = run(["docker", "version", "--format", "{{.Server.Version}}"]).stdout.strip()
    runc = run(["runc", "--version"], check=False).stdout.splitlines()
    families = sorted({family for family, _ in recording.socket_calls})
    clone_flags = sorted({f"{flags:#x}" for flags, _ in recording.clone_flags})
    header = [
        "# Syscalls made by qc-mcp (server, docker-init, healthchecks, docker exec probes) as",
        "# recorded by `python3 seccomp/record.py record` (RUN-05). Input to `record.py generate`.",
        f"# date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}",
        f"# kernel: {os.uname().release}; docker: {docker}; {runc[0] if runc else 'runc ?'}",
        f"# image: {IMAGE}",
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
            f"used only by {ROLES['runc']} (reviewed in record.py: RUNC_INIT_ONLY are not "
            "allowed, RUNC_INIT_KEPT are)",
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


def preflight() -> None:
    if os.geteuid() != 0:
        raise RecordError("run as root: bpftrace and the secret files' owner need it")
    for tool in ("docker", "bpftrace", "openssl"):
        if shutil.which(tool) is None:
            raise RecordError(f"{tool} is not installed (scripts/install-docker installs it)")
    if run(["docker", "image", "inspect", IMAGE], check=False).returncode != 0:
        raise RecordError(f"image {IMAGE} is missing: run `bin/qcstack build` first")


def cmd_record(args: argparse.Namespace) -> int:
    preflight()
    with tempfile.TemporaryDirectory(prefix="qcrec-") as tmp:
        root = Path(tmp)
        profile_dir = root / "profile"
        profile_dir.mkdir()
        (profile_dir / "qc-mcp.json").write_text(render_profile(RECORDING_PROFILE))
        work = Workdir(root, profile_dir)
        work.prepare()
        stack = Stack(work)
        remove_leftovers(stack)
        tracer = Tracer(root / "bpftrace.out")
        tracer.start()
        try:
            namespaces = drive_workload(stack)
        finally:
            remove_leftovers(stack)
            time.sleep(1)
            text = tracer.stop()
            if args.keep_trace:
                shutil.copy(tracer.output, args.keep_trace)
    recording = parse_trace(text, namespaces)
    write_recorded(recording, Path(args.output))
    log(f"wrote {args.output}: {len(recording.names)} syscalls")
    log(f"runc init only: {recording.runc_init_only()}")
    notes = check_recording(recording)
    for note in notes:
        log(f"REVIEW: {note}")
    log("next: python3 seccomp/record.py generate && python3 seccomp/record.py verify")
    return 0


# ---------------------------------------------------------------------------------------------
# verify: the generated profile, enforced, against the same workload plus the deny checks
# ---------------------------------------------------------------------------------------------


def deny_check_numbers() -> dict[str, Any]:
    by_name = {name: number for number, name in syscall_numbers().items()}
    return {
        "deny": {name: by_name[name] for name in MUST_DENY},
        "clone": by_name["clone"],
        "clone3": by_name["clone3"],
        "clone_new": dict(CLONE_NEW_FLAGS),
    }


def evaluate_deny_check(report: Mapping[str, Any]) -> list[str]:
    """The failures in a deny-check report (empty when every rule holds)."""
    failures = [f"{n}: {r}" for n, r in report["denied"].items() if r != "EPERM"]
    rules = report["argument_rules"]
    if rules["clone3"] != "ENOSYS":
        failures.append(f"clone3: {rules['clone3']}")
    for key, result in rules.items():
        if key.startswith(("clone CLONE_", "socket ")) and result != "EPERM":
            failures.append(f"{key}: {result}")
    for key, result in report["allowed"].items():
        if result not in (True, "succeeded"):
            failures.append(f"{key} should work: {result}")
    return failures


def cmd_verify(args: argparse.Namespace) -> int:
    preflight()
    failures: list[str] = []

    def deny_check(container: str) -> None:
        done = run(
            ["docker", "exec", container, "/usr/bin/python3", "-c", DENY_CHECK_SRC,
             json.dumps(deny_check_numbers())],
            check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise RecordError(f"deny check crashed:\n{done.stdout}{done.stderr}")
        report = json.loads(done.stdout.strip().splitlines()[-1])
        print(json.dumps(report, indent=2))
        failures.extend(evaluate_deny_check(report))
        status = run(["docker", "inspect", "-f", "{{.State.Health.Status}}", container])
        if status.stdout.strip() != "healthy":
            failures.append(f"qc-mcp is {status.stdout.strip()}, not healthy")
        logs = run(["docker", "logs", container])
        if "Operation not permitted" in logs.stdout + logs.stderr:
            failures.append("'Operation not permitted' in the server's log")

    with tempfile.TemporaryDirectory(prefix="qcrec-") as tmp:
        root = Path(tmp)
        profile_dir = root / "profile"
        profile_dir.mkdir()
        shutil.copy(Path(args.profile), profile_dir / "qc-mcp.json")
        work = Workdir(root, profile_dir)
        work.prepare()
        stack = Stack(work)
        remove_leftovers(stack)
        try:
            drive_workload(stack, deny_check)
        finally:
            remove_leftovers(stack)
    for failure in failures:
        log(f"FAIL: {failure}")
    if failures:
        return 1
    log("verify: healthy, 64 tools, tool calls answered, probes pass, denials hold")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    record = commands.add_parser("record", help="record syscalls -> recorded-syscalls.txt")
    record.add_argument("--output", default=str(RECORDED_FILE))
    record.add_argument("--keep-trace", metavar="FILE", help="also keep bpftrace's raw output")
    record.set_defaults(func=cmd_record)
    generate = commands.add_parser("generate", help="recorded-syscalls.txt -> qc-mcp.json")
    generate.add_argument("--recorded", default=str(RECORDED_FILE))
    generate.add_argument("--output", default=str(PROFILE_FILE))
    generate.add_argument("--check", action="store_true", help="only check the file is current")
    generate.set_defaults(func=cmd_generate)
    verify = commands.add_parser("verify", help="run the workload and deny checks under a profile")
    verify.add_argument("--profile", default=str(PROFILE_FILE))
    verify.set_defaults(func=cmd_verify)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (RecordError, subprocess.TimeoutExpired) as error:
        log(f"error: {error}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
