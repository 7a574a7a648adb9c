"""DET-07 scenario: an intruder in qc-mcp opens a listener, a back door for later.

No prevention stops the listen itself (the server listens on 8000, so seccomp allows it); what
holds is that nothing outside the stack can reach it: qc-mcp publishes no port (NET-01) and its
networks are internal (NET-02).
"""

CONTROL = "DET-07"
RULE = "qcstack new listening socket"
SERVICE = "qc-mcp"
RUNS = "container"

if __name__ == "__main__":
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("0.0.0.0", 9999))
        try:
            server.listen(1)
            attempted("listen", address="0.0.0.0", port=9999, protocol="tcp")
        except OSError as error:
            attempted("listen", error.errno, address="0.0.0.0", port=9999, protocol="tcp")
    finish()
