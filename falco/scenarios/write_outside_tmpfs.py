"""DET-02 scenario: an intruder in qc-mcp tries to plant code outside its tmpfs.

Prevention: RUN-01, the root filesystem is read-only (EROFS).
"""

CONTROL = "DET-02"
RULE = "qcstack write outside tmpfs"
SERVICE = "qc-mcp"
RUNS = "container"

if __name__ == "__main__":
    for path in ("/app/sitecustomize.py", "/etc/qcstack-dropped"):
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        try:
            os.close(os.open(path, flags, 0o644))
            attempted("openat", path=path, flags="O_WRONLY|O_CREAT|O_TRUNC")
        except OSError as error:
            attempted("openat", error.errno, path=path, flags="O_WRONLY|O_CREAT|O_TRUNC")
    finish()
