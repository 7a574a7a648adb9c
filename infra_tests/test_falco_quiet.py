"""DET-01..04, DET-06, DET-07 against the running stack: its own processes, health checks, open
files, listeners and connections, read from the live containers, match none of qcstack's rules.

No Falco runs here (none can be had on these machines). What Falco would see of each process
(its executable, arguments, parent, uid), of each file it holds open, of each listening socket
and of each outgoing TCP connection is read from the host's /proc and evaluated with qcstack's
evaluator (stack/falco/evaluate.py): a rule that fires on the stack's own work would lock the
gateway down for nothing.
"""

from __future__ import annotations

from typing import Any

import pytest

from infra_tests.conftest import StackContainers, gateway_calls
from infra_tests.dockerhost import DockerHost
from stack.falco.images import compose_repositories
from stack.falco.lint import COMPOSE_FILE
from stack.falco.rules import load_rules
from stack.settings import Settings

RULES = load_rules()
SERVICES = sorted(compose_repositories(COMPOSE_FILE))
UNEXPECTED = "qcstack unexpected process"
MEMORY = "qcstack execution from memory or tmpfs"
LISTEN = "qcstack new listening socket"
WRITE = "qcstack write outside tmpfs"
SECRET_RULES = ("qcstack secret read by another process", "qcstack process environment read")
CONNECTION_RULES = {
    "qc-mcp": "qcstack qc-mcp connection past the proxy",
    "gateway": "qcstack gateway connection off its upstreams",
    "egress-proxy": "qcstack proxy connection off port 443",
}

# Run on the Docker host as root: Falco's view of every process of the container (by host pid)
# and the TCP ports its network namespace listens on.
PROCESSES = """
pids = [int(p) for p in sys.argv[1].split()]
def comm(pid):
    return open(f"/proc/{pid}/comm").read().strip()
def uid(pid):
    return int(next(l for l in open(f"/proc/{pid}/status") if l.startswith("Uid:")).split()[1])
def writable(pid, user):
    status = os.stat(f"/proc/{pid}/exe")
    return bool(status.st_mode & 0o002 or (status.st_uid == user and status.st_mode & 0o200))
processes = []
for pid in pids:
    argv = [a.decode() for a in open(f"/proc/{pid}/cmdline", "rb").read().split(b"\\0")[:-1]]
    exepath = os.readlink(f"/proc/{pid}/exe").removesuffix(" (deleted)")
    ppid = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
    user = uid(pid)
    processes.append({
        "proc.pid": pid, "proc.name": comm(pid), "proc.exepath": exepath, "proc.exe": argv[0],
        "proc.args": " ".join(argv[1:]), "proc.cmdline": " ".join([comm(pid), *argv[1:]]),
        "proc.pname": comm(ppid), "user.uid": user,
        "proc.is_exe_from_memfd": exepath.startswith("/memfd:"),
        "proc.exe_writable": writable(pid, user),
    })
# Only the container's processes' sockets: Docker's embedded DNS server listens in the same
# network namespace, but as dockerd, a host process Falco does not count as the container's.
owned = set()
for pid in pids:
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            owned.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            pass
ports = set()
for table, family in (("tcp", "4"), ("tcp6", "6")):
    for line in open(f"/proc/{pids[0]}/net/{table}").read().splitlines()[1:]:
        local, state, inode = line.split()[1], line.split()[3], line.split()[9]
        if state == "0A" and f"socket:[{inode}]" in owned:
            ports.add((family, int(local.rsplit(":", 1)[1], 16)))
# Its outgoing TCP connections, open or just closed (TIME_WAIT keeps them for a minute): those
# whose local port is none the namespace listens on.
def address(text):
    raw = bytes.fromhex(text)
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    if len(words) == 16 and words[:12] == bytes(10) + b"\\xff\\xff":
        words = words[12:]  # an IPv4-mapped address: Falco reports it as IPv4
    return ipaddress.ip_address(words)
import ipaddress
rows = []
for table in ("tcp", "tcp6"):
    rows += [line.split() for line in open(f"/proc/{pids[0]}/net/{table}").read().splitlines()[1:]]
local_ports = {int(row[1].rsplit(":", 1)[1], 16) for row in rows if row[3] == "0A"}
connections = []
for row in rows:
    local_port = int(row[1].rsplit(":", 1)[1], 16)
    if row[3] in ("01", "06") and local_port not in local_ports:
        remote, port = row[2].rsplit(":", 1)
        ip = address(remote)
        connections.append([str(ip.version), str(ip), int(port, 16)])
# The files its processes hold open, with the access they were opened for.
files = []
for pid in pids:
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            info = open(f"/proc/{pid}/fdinfo/{fd}").read().splitlines()
        except OSError:
            continue
        if target.startswith("/"):
            flags = int(next(l for l in info if l.startswith("flags:")).split()[1], 8)
            files.append([pid, target, flags & 3])
report(processes=processes, listening=sorted(ports), connections=connections, files=files)
"""

# The health check's executable as Falco names it: its path with symlinks resolved inside the
# container's root.
RESOLVE = """
root, path = f"/proc/{sys.argv[1]}/root", sys.argv[2]
for _ in range(8):
    full = root + path
    if not os.path.islink(full):
        break
    target = os.readlink(full)
    path = target if target.startswith("/") else os.path.join(os.path.dirname(path), target)
report(exepath=path)
"""


@pytest.fixture(scope="module")
def through_the_gateway(
    docker: DockerHost, settings: Settings, stack_containers: StackContainers
) -> None:
    """Tool calls through the relay, the gateway, qc-mcp and the proxy to the API double, so the
    stack's connections are open, or just closed, when they are read."""
    image = stack_containers["qc-mcp"].attrs["Image"]
    data = gateway_calls(docker, settings, image, [("read_account", {}), ("list_projects", {})])
    assert [call["tool"] for call in data["calls"]] == ["read_account", "list_projects"]


def container_fields(container: Any) -> dict[str, object]:
    return {
        "container.id": container.id[:12],
        "container.name": str(container.attrs["Name"]).lstrip("/"),
        "container.image.repository": str(container.attrs["Config"]["Image"]).rsplit(":", 1)[0],
        "evt.res": "SUCCESS",
        "evt.failed": False,
    }


def live_view(docker: DockerHost, stack_containers: StackContainers, service: str) -> Any:
    container = stack_containers[service]
    pids = docker.check("docker top %s -eo pid", container.id).split()[1:]
    result = docker.host_probe(PROCESSES, " ".join(pids))
    assert result.rc == 0 and result.data, f"reading {service}'s processes: {result.stderr}"
    return container, result.data


def socket_event(
    container: Any, view: Any, kind: str, family: str, address: str, port: int
) -> dict[str, object]:
    """A TCP socket event of the service's main process (the one docker-init started)."""
    main = next(p for p in view["processes"] if p["proc.pname"] == "docker-init")
    fields = {"evt.type": kind, "fd.typechar": family, "fd.l4proto": "tcp", "fd.sport": port}
    return {
        **container_fields(container),
        **main,
        **fields,
        **({"fd.sip": address} if address else {}),
    }


def exec_events(docker: DockerHost, stack_containers: StackContainers, service: str) -> list[Any]:
    """An execve event for each running process of the service and for its health check."""
    container, view = live_view(docker, stack_containers, service)
    base = {**container_fields(container), "evt.type": "execve"}
    events = [{**base, **process} for process in view["processes"]]
    test = container.attrs["Config"].get("Healthcheck", {}).get("Test") or []
    assert test[:1] == ["CMD"], f"{service}'s health check is not an exec form: {test}"
    pid = str(container.attrs["State"]["Pid"])
    resolved = docker.host_probe(RESOLVE, pid, test[1]).data["exepath"]
    args = " ".join(test[2:])
    events.append(
        {
            **base,
            "proc.name": resolved.rsplit("/", 1)[-1][:15],
            "proc.exepath": resolved,
            "proc.exe": test[1],
            "proc.args": args,
            "proc.cmdline": f"{resolved.rsplit('/', 1)[-1]} {args}",
            "proc.pname": "runc",
            "user.uid": int(str(container.attrs["Config"]["User"]).split(":")[0] or 0),
            "proc.is_exe_from_memfd": False,
            "proc.exe_writable": False,
        }
    )
    return events


@pytest.mark.control("DET-01", "config")
@pytest.mark.parametrize("service", SERVICES)
def test_stacks_own_processes_are_the_expected_ones(
    docker: DockerHost, stack_containers: StackContainers, service: str
) -> None:
    events = exec_events(docker, stack_containers, service)
    assert len(events) >= 3, f"{service}: expected docker-init, the service and its health check"
    flagged = [e["proc.cmdline"] for e in events if RULES.matches(UNEXPECTED, e)]
    assert flagged == [], f"{service}: {UNEXPECTED!r} fires on the stack's own {flagged}"


@pytest.mark.control("DET-06", "config")
@pytest.mark.parametrize("service", SERVICES)
def test_stacks_own_processes_run_from_the_image(
    docker: DockerHost, stack_containers: StackContainers, service: str
) -> None:
    events = exec_events(docker, stack_containers, service)
    flagged = [e["proc.exepath"] for e in events if RULES.matches(MEMORY, e)]
    assert flagged == [], f"{service}: {MEMORY!r} fires on the stack's own {flagged}"


@pytest.mark.control("DET-07", "config")
@pytest.mark.parametrize("service", SERVICES)
def test_stacks_own_listeners_are_the_expected_ones(
    docker: DockerHost, stack_containers: StackContainers, service: str
) -> None:
    container, view = live_view(docker, stack_containers, service)
    listeners = [
        socket_event(container, view, "listen", family, "", port)
        for family, port in view["listening"]
    ]
    assert listeners, f"{service} listens on no port"
    flagged = [e["fd.sport"] for e in listeners if RULES.matches(LISTEN, e)]
    assert flagged == [], f"{service}: {LISTEN!r} fires on the stack's own ports {flagged}"


@pytest.mark.control("DET-04", "config")
@pytest.mark.parametrize("service", sorted(CONNECTION_RULES))
def test_stacks_own_connections_are_on_the_expected_paths(
    docker: DockerHost,
    stack_containers: StackContainers,
    through_the_gateway: None,
    service: str,
) -> None:
    container, view = live_view(docker, stack_containers, service)
    connects = [
        socket_event(container, view, "connect", version, address, port)
        for version, address, port in view["connections"]
    ]
    # The calls just made went gateway -> qc-mcp -> proxy -> the API double's port 443.
    assert connects, f"{service}: no outgoing connection seen after the tool calls"
    rule = CONNECTION_RULES[service]
    flagged = [f"{e['fd.sip']}:{e['fd.sport']}" for e in connects if RULES.matches(rule, e)]
    assert flagged == [], f"{service}: {rule!r} fires on the stack's own connections {flagged}"


def open_events(docker: DockerHost, stack_containers: StackContainers, service: str) -> list[Any]:
    """An open event for each file the service's processes hold open, by the process holding it."""
    container, view = live_view(docker, stack_containers, service)
    by_pid = {process["proc.pid"]: process for process in view["processes"]}
    return [
        {
            **container_fields(container),
            **by_pid[pid],
            "evt.type": "openat",
            "fd.typechar": "f",
            "fd.num": 3,
            "fd.name": path,
            "evt.arg.name": path,
            "evt.is_open_read": access in (0, 2),
            "evt.is_open_write": access in (1, 2),
        }
        for pid, path, access in view["files"]
    ]


@pytest.mark.control("DET-02", "config")
@pytest.mark.parametrize("service", SERVICES)
def test_stacks_own_files_open_for_writing_are_where_it_may_write(
    docker: DockerHost, stack_containers: StackContainers, service: str
) -> None:
    writes = [e for e in open_events(docker, stack_containers, service) if e["evt.is_open_write"]]
    assert writes, f"{service}: no file open for writing (every service has /dev/null as stdin)"
    flagged = [e["fd.name"] for e in writes if RULES.matches(WRITE, e)]
    assert flagged == [], f"{service}: {WRITE!r} fires on the stack's own {flagged}"


@pytest.mark.control("DET-03", "config")
@pytest.mark.parametrize("service", SERVICES)
def test_stacks_own_files_open_for_reading_are_no_secret_of_another(
    docker: DockerHost, stack_containers: StackContainers, service: str
) -> None:
    reads = [e for e in open_events(docker, stack_containers, service) if e["evt.is_open_read"]]
    assert reads, f"{service}: no file open for reading (every service has /dev/null as stdin)"
    flagged = [(r, e["fd.name"]) for e in reads for r in SECRET_RULES if RULES.matches(r, e)]
    assert flagged == [], f"{service}: fires on the stack's own {flagged}"
