"""qcstack: a hardened, containerized deployment of the QuantConnect MCP server."""

__version__ = "0.1.0"
