"""Talks to the Docker host of the stack under test through testinfra, locally or over SSH."""

from __future__ import annotations

import json
import textwrap
import time
from dataclasses import dataclass
from typing import Any

from testinfra.host import Host

# Shared by every probe: raw syscalls through ctypes and one JSON line of results.
PROBE_PRELUDE = textwrap.dedent(
    """
    import ctypes, errno, json, os, sys
    libc = ctypes.CDLL(None, use_errno=True)
    def syscall(nr, *args):
        ctypes.set_errno(0)
        ret = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])
        return ret, ctypes.get_errno()
    def report(**fields):
        print(json.dumps(fields), flush=True)
    def server_pid():
        # PID 1 is the init when RUN-10 holds; the server is the process running launch.py.
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                argv = open(f"/proc/{entry}/cmdline", "rb").read().split(b"\\0")
            except OSError:
                continue
            if b"/app/launch.py" in argv and not argv[0].endswith(b"docker-init"):
                return int(entry)
        raise SystemExit("no server process found")
    """
)


@dataclass(frozen=True)
class ProbeResult:
    """What a probe printed last (as JSON), with its exit status and error output."""

    rc: int
    data: dict[str, Any]
    stderr: str


def _probe_result(result: Any) -> ProbeResult:
    lines = [line for line in str(result.stdout).splitlines() if line.startswith("{")]
    data = json.loads(lines[-1]) if lines else {}
    return ProbeResult(rc=result.rc, data=data, stderr=str(result.stderr))


@dataclass(frozen=True)
class DockerHost:
    host: Host
    secrets_dir: str
    """Where the stack's secret files are on this host (the canary secrets of a test stack)."""

    def run(self, command: str, *args: str) -> Any:
        return self.host.run(command, *args)

    def check(self, command: str, *args: str) -> str:
        result = self.host.run(command, *args)
        assert result.rc == 0, f"{result.command!r} failed ({result.rc}): {result.stderr.strip()}"
        return str(result.stdout)

    def inspect(self, kind: str, name: str) -> dict[str, Any]:
        data: list[dict[str, Any]] = json.loads(self.check(f"docker {kind} inspect %s", name))
        return data[0]

    def container_id(self, project: str, service: str) -> str:
        ids = self.check(
            "docker ps -q --no-trunc --filter %s --filter %s",
            f"label=com.docker.compose.project={project}",
            f"label=com.docker.compose.service={service}",
        ).split()
        assert len(ids) == 1, (
            f"expected one running {service} container in compose project {project}, found "
            f"{len(ids)}: bring the stack up with `bin/qcstack test` or `bin/qcstack up`"
        )
        return ids[0]

    def probe(
        self, container: str, source: str, *args: str, user: str | None = None
    ) -> ProbeResult:
        """Runs Python source inside a running container, as its own user unless told."""
        user_args = f"--user {user} " if user else ""
        result = self.host.run(
            f"docker exec {user_args}%s /usr/bin/python3 -c %s" + " %s" * len(args),
            container,
            PROBE_PRELUDE + textwrap.dedent(source),
            *args,
        )
        return _probe_result(result)

    def netns_probe(self, container: str, source: str, *args: str) -> ProbeResult:
        """Runs Python source on the Docker host inside the container's network namespace only:
        for a container with no interpreter of its own (the relay, the collector). Routes,
        addresses and firewall are the container's; files and user are the host's."""
        result = self.host.run(
            "nsenter -t %s -n python3 -c %s" + " %s" * len(args),
            str(self.main_pid(container)),
            PROBE_PRELUDE + textwrap.dedent(source),
            *args,
        )
        return _probe_result(result)

    def host_probe(self, source: str, *args: str) -> ProbeResult:
        """Runs Python source on the Docker host itself (as root: it looks into containers)."""
        result = self.host.run(
            "python3 -c %s" + " %s" * len(args), PROBE_PRELUDE + textwrap.dedent(source), *args
        )
        return _probe_result(result)

    def main_pid(self, container: str) -> int:
        """The host pid of the container's main process: the one its init started, if any."""
        state = self.inspect("container", container)
        pid = int(state["State"]["Pid"])
        if state["HostConfig"].get("Init"):
            children = self.check("cat /proc/%s/task/%s/children", str(pid), str(pid)).split()
            assert len(children) == 1, f"init of {container} has children {children}"
            pid = int(children[0])
        return pid

    def connects(self, address: str, port: int, *, wait_seconds: float = 0) -> bool:
        """Whether the Docker host itself can open a TCP connection to address:port.

        With wait_seconds, keeps trying that long (for a server that is still starting).
        """
        code = "import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 3)"
        deadline = time.monotonic() + wait_seconds
        while True:
            if self.host.run("python3 -c %s %s %s", code, address, str(port)).rc == 0:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.25)

    def attempt(
        self, container: str, attack: str, *args: str, setup: str = "", user: str | None = None
    ) -> int | None:
        """Tries `attack` (Python statements) in the container; returns the errno it failed with."""
        result = self.probe(container, _attempt_source(attack, setup), *args, user=user)
        return _attempt_errno(result)

    def host_attempt(self, attack: str, *args: str, setup: str = "") -> int | None:
        """Tries `attack` on the Docker host itself; returns the errno it failed with."""
        return _attempt_errno(self.host_probe(_attempt_source(attack, setup), *args))


def _attempt_source(attack: str, setup: str) -> str:
    return (
        textwrap.dedent(setup)
        + "\ntry:\n"
        + textwrap.indent(textwrap.dedent(attack).strip(), "    ")
        + "\n    report(error=None)\nexcept OSError as error:\n    report(error=error.errno)\n"
    )


def _attempt_errno(result: ProbeResult) -> int | None:
    assert "error" in result.data, f"probe failed ({result.rc}): {result.stderr[-1000:]}"
    error: int | None = result.data["error"]
    return error
