"""DET-04 scenario: the gateway, which holds the brokerage secrets, connects to a canary outside.

Prevention: NET-02, the gateway's networks are internal and have no route there (ENETUNREACH).
"""

CONTROL = "DET-04"
RULE = "qcstack gateway connection off its upstreams"
SERVICE = "gateway"
RUNS = "container"

if __name__ == "__main__":
    canary = CONTEXT["canary"]
    FACTS["connected"] = connect(canary["address"], canary["port"])
    finish()
