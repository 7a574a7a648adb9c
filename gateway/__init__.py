"""qcstack's MCP gateway: the one door to qc-mcp, with tool policy, approvals and an audit log."""
