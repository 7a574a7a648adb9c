"""The Python sources run inside containers (as `python3 -c`) while recording and verifying."""

from __future__ import annotations

from pathlib import Path

SOURCES = Path(__file__).resolve().parent

# The benign probes, in the order they run. Each prints one JSON line and exits 0 when
# everything behaved as the hardening says it should.
PROBES = (
    "tmp_files",
    "proc",
    "fork_limit",
    "fd_limit",
    "exec_tmp",
    "setuid",
    "sockets",
    "ctypes",
    "threads_signals",
    "orphans",
    "proc_fd_write",
)


MCP_CLIENTS = frozenset({"mcp_client", "gateway_client", "gateway_live"})
"""The scripts that run mcp_session.py's session() and wait_for_name(): it is put before them."""


def workload_source(name: str) -> str:
    """The text of a workload script: mcp_client, gateway_client, gateway_live, gateway_admin,
    proxy_requests, deny_check or probes/<name>."""
    source = (SOURCES / f"{name}.py").read_text(encoding="utf-8")
    if name in MCP_CLIENTS:
        source = (SOURCES / "mcp_session.py").read_text(encoding="utf-8") + "\n" + source
    return source
