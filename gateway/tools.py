"""What each upstream tool does, decided by its name: the gateway never trusts annotations."""

from __future__ import annotations

from enum import StrEnum
from types import MappingProxyType


class ToolKind(StrEnum):
    READ = "read"
    """Reads QuantConnect state, or asks its AI helpers about code; changes nothing."""
    WRITE = "write"
    """Creates, changes or deletes projects, files, object-store data or collaborators."""
    COMPUTE = "compute"
    """Spends compute or credits: compiles, backtests, optimizations, nodes."""
    LIVE = "live"
    """Live trading: deploys, stops, liquidates, commands, brokerage authorization."""


def _kinds(kind: ToolKind, *names: str) -> dict[str, ToolKind]:
    return dict.fromkeys(names, kind)


# The 64 tools of iflow-mcp-quantconnect-mcp-server 0.1.0. A tool missing here (a new upstream
# version) has no kind, and the gateway denies it until someone classifies it.
TOOL_KINDS = MappingProxyType(
    _kinds(
        ToolKind.READ,
        "read_account",
        "complete_code",
        "enhance_error_message",
        "update_code_to_pep8",  # returns converted code; writes nothing
        "check_syntax",
        "search_quantconnect",
        "read_backtest",
        "list_backtests",
        "read_backtest_chart",
        "read_backtest_orders",
        "read_backtest_insights",
        "read_compile",
        "read_file",
        "read_lean_versions",
        "read_live_algorithm",
        "list_live_algorithms",
        "read_live_chart",
        "read_live_logs",
        "read_live_portfolio",
        "read_live_orders",
        "read_live_insights",
        "read_mcp_server_version",
        "read_latest_mcp_server_version",
        "read_object_properties",
        "read_object_store_file_job_id",
        "read_object_store_file_download_url",
        "list_object_store_files",
        "estimate_optimization_time",
        "read_optimization",
        "list_optimizations",
        "read_project",
        "list_projects",
        "read_project_collaborators",
        "read_project_nodes",
    )
    | _kinds(
        ToolKind.WRITE,
        "create_file",
        "update_file_name",
        "update_file_contents",
        "patch_file",
        "delete_file",
        "create_project",
        "update_project",
        "delete_project",
        "update_backtest",
        "delete_backtest",
        "update_optimization",
        "delete_optimization",
        "upload_object",
        "delete_object",
        "create_project_collaborator",
        "update_project_collaborator",
        "delete_project_collaborator",
        "lock_project_with_collaborators",
    )
    | _kinds(
        ToolKind.COMPUTE,
        "check_initialization_errors",  # runs the algorithm's initialization on QuantConnect
        "create_compile",
        "create_backtest",
        "create_optimization",
        "abort_optimization",
        "update_project_nodes",
    )
    | _kinds(
        ToolKind.LIVE,
        "authorize_connection",
        "create_live_algorithm",
        "stop_live_algorithm",
        "liquidate_live_algorithm",
        "create_live_command",
        "broadcast_live_command",
    )
)

WAYS_OUT = frozenset({"stop_live_algorithm", "liquidate_live_algorithm"})
"""Live-trading tools that only ever reduce exposure: never held for approval, never locked."""


def kind_of(tool: str) -> ToolKind | None:
    """The tool's kind, or None for a tool the gateway does not know (denied)."""
    return TOOL_KINDS.get(tool)
