"""DET-03 scenario: a process other than the server, with the server's uid, reads the API token.

No prevention stops it: the file is 0400 and owned by the server's uid (SEC-02), and a process
with that uid may read it. The scenario reports the file's mode and owner and the size it read,
never a byte of the content.
"""

CONTROL = "DET-03"
RULE = "qcstack secret read by another process"
SERVICE = "qc-mcp"
RUNS = "container"

if __name__ == "__main__":
    path = "/run/secrets/qc_api_token"
    status = os.stat(path)
    FACTS["file"] = {"mode": oct(status.st_mode & 0o7777), "uid": status.st_uid}
    try:
        with open(path, "rb") as handle:
            FACTS["bytes_read"] = len(handle.read())
        attempted("openat", path=path, flags="O_RDONLY")
    except OSError as error:
        attempted("openat", error.errno, path=path, flags="O_RDONLY")
    finish()
