"""DET-06 scenario: an intruder in qc-mcp runs a dropped binary from /tmp, and one from memory.

Prevention: RUN-02, /tmp is noexec (EACCES); RUN-05, memfd_create is not allowed (EPERM).
"""

CONTROL = "DET-06"
RULE = "qcstack execution from memory or tmpfs"
SERVICE = "qc-mcp"
RUNS = "container"

if __name__ == "__main__":
    import shutil

    dropped = "/tmp/dropped"
    shutil.copyfile("/usr/bin/python3", dropped)
    os.chmod(dropped, 0o755)
    try:
        error = child_exec(dropped, [dropped, "-c", "pass"])
        attempted("execve", error, process=forked_child(), path=dropped)
    finally:
        os.unlink(dropped)
    try:
        memory = os.memfd_create("payload")
    except OSError as error:
        attempted("memfd_create", error.errno, path="payload")
    else:
        attempted("memfd_create", path="payload")
        with open("/usr/bin/python3", "rb") as source:
            os.write(memory, source.read())
        path = f"/proc/self/fd/{memory}"
        error = child_exec(path, [path, "-c", "pass"])
        attempted(
            "execve", error, process=forked_child(), path=path, memfd=True, exepath="memfd:payload"
        )
    finish()
