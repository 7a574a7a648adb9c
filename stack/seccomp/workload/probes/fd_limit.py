"""Probe: opens files and sockets until the open-file limit answers EMFILE."""

import errno
import json
import os
import resource
import socket

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
fds, error = [], None
while True:
    try:
        fds.append(os.open("/dev/null", os.O_RDONLY))
    except OSError as e:
        error = errno.errorcode[e.errno]
        break
for fd in fds:
    os.close(fd)
socks = []
try:
    while True:
        socks.append(socket.socket())
except OSError as e:
    sock_error = errno.errorcode[e.errno]
for s in socks:
    s.close()
try:
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard + 1, hard + 1))
    raised = "raised"
except (ValueError, OSError) as e:
    raised = type(e).__name__
resource.setrlimit(resource.RLIMIT_NOFILE, (soft // 2, hard))
print(
    json.dumps(
        {
            "soft": soft,
            "hard": hard,
            "opened": len(fds),
            "error": error,
            "socket_error": sock_error,
            "raise_hard": raised,
            "nproc": resource.getrlimit(resource.RLIMIT_NPROC),
        }
    )
)
assert error == "EMFILE"
