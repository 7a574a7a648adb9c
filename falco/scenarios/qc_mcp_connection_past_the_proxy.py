"""DET-04 scenario: qc-mcp connects to a canary on the proxy's outside network, past the proxy.

Prevention: NET-02, qc-mcp's networks are internal and have no route there (ENETUNREACH).
"""

CONTROL = "DET-04"
RULE = "qcstack qc-mcp connection past the proxy"
SERVICE = "qc-mcp"
RUNS = "container"

if __name__ == "__main__":
    canary = CONTEXT["canary"]
    FACTS["connected"] = connect(canary["address"], canary["port"])
    finish()
