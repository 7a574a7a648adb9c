"""DET-01 scenario: an intruder in qc-mcp tries a shell, a package manager and a network tool.

Prevention: IMG-04, the image has none of them (ENOENT). Falco sees each execve fail.
"""

CONTROL = "DET-01"
RULE = "qcstack unexpected process"
SERVICE = "qc-mcp"
RUNS = "container"

if __name__ == "__main__":
    for path in ("/bin/sh", "/usr/bin/apt-get", "/usr/bin/curl"):
        error = child_exec(path, [path])
        attempted("execve", error, process=forked_child(), path=path)
    finish()
