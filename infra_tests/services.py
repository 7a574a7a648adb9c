"""How each hardened service besides qc-mcp is expected to look, for the RUN and IMG suites."""

from __future__ import annotations

from dataclasses import dataclass

MiB = 1024 * 1024


@dataclass(frozen=True)
class Expected:
    """One service's hardening as compose.yaml sets it and its image builds it."""

    uid: int
    comm: str
    """The main process's name (/proc/<pid>/status Name) once the init has started it."""
    tmpfs: dict[str, str] | None
    memory: int
    nano_cpus: int
    pids: int
    mounts: tuple[tuple[str, str, bool], ...]
    """(destination, type, writable) of every mount, test stacks included."""
    read_only_dirs: tuple[str, ...]
    """Folders of its root filesystem an intruder would want to write into."""
    owned_paths: tuple[str, ...] = ()
    """Paths of the image its user owns: the mount point of its state volume, nothing else."""


SIDE_SERVICES = {
    "egress-proxy": Expected(
        uid=10002,
        comm="squid",
        tmpfs={"/dev/shm": "rw,noexec,nosuid,nodev,size=1m,uid=10002,gid=10002,mode=0700"},
        memory=128 * MiB,
        nano_cpus=500_000_000,
        pids=32,
        mounts=(("/etc/squid/policy.conf", "bind", False),),
        read_only_dirs=("/", "/etc/squid", "/usr/sbin", "/usr/local/bin"),
    ),
    "gateway": Expected(
        uid=10004,
        comm="python3",
        tmpfs=None,
        memory=256 * MiB,
        nano_cpus=1_000_000_000,
        pids=64,
        mounts=(
            ("/run/secrets/gateway_token", "bind", False),
            ("/run/secrets/gateway_admins", "bind", False),
            ("/run/secrets/gateway_responder_token", "bind", False),
            ("/run/secrets/gateway_brokerages", "bind", False),
            ("/var/lib/qcstack-gateway", "volume", True),
        ),
        read_only_dirs=(
            "/",
            "/app/gateway",
            "/app/servicebase",
            "/usr/bin",
            "/usr/local/bin",
            "/etc",
        ),
        owned_paths=("/var/lib/qcstack-gateway",),
    ),
    "gateway-relay": Expected(
        uid=10005,
        comm="relay",
        tmpfs=None,
        memory=32 * MiB,
        nano_cpus=500_000_000,
        pids=32,
        mounts=(),
        read_only_dirs=("/", "/usr/local/bin"),
    ),
    "otel-collector": Expected(
        uid=10006,
        comm="otelcol-qcstack",
        tmpfs=None,
        memory=128 * MiB,
        nano_cpus=500_000_000,
        pids=64,
        mounts=(("/var/lib/otelcol", "volume", True),),
        read_only_dirs=("/", "/etc/otelcol", "/usr/local/bin"),
        owned_paths=("/var/lib/otelcol",),
    ),
    "falco-responder": Expected(
        uid=10007,
        comm="python3",
        tmpfs=None,
        memory=128 * MiB,
        nano_cpus=500_000_000,
        pids=32,
        mounts=(
            ("/run/secrets/responder_token", "bind", False),
            ("/var/lib/qcstack-responder", "volume", True),
        ),
        read_only_dirs=("/", "/app/responder", "/app/servicebase", "/usr/bin", "/usr/local/bin"),
        owned_paths=("/var/lib/qcstack-responder",),
    ),
}
