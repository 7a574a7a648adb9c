"""DET-03 scenario: an intruder in qc-mcp reads the server's environment through /proc.

No prevention stops a process with the server's uid; what holds is that the environment carries
no credential (SEC-01: the token comes from a file). The scenario reports the size read and
whether any QUANTCONNECT_* variable is set, never the values.
"""

CONTROL = "DET-03"
RULE = "qcstack process environment read"
SERVICE = "qc-mcp"
RUNS = "container"

if __name__ == "__main__":
    path = f"/proc/{server_pid()}/environ"
    try:
        with open(path, "rb") as handle:
            names = [v.split(b"=", 1)[0].decode() for v in handle.read().split(b"\0") if v]
        FACTS["credential_variables"] = [n for n in names if n.startswith("QUANTCONNECT_")]
        attempted("openat", path=path, flags="O_RDONLY")
    except OSError as error:
        attempted("openat", error.errno, path=path, flags="O_RDONLY")
    finish()
