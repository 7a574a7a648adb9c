"""Probe: forks until the process limit answers EAGAIN."""

import errno
import json
import os

r, w = os.pipe()
kids, error = [], None
for _ in range(512):
    try:
        pid = os.fork()
    except OSError as e:
        error = errno.errorcode[e.errno]
        break
    if pid == 0:
        os.close(w)
        os.read(r, 1)
        os._exit(0)
    kids.append(pid)
os.close(w)
codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in kids]
try:
    os.waitpid(-1, os.WNOHANG)
except ChildProcessError:
    pass
print(json.dumps({"forked": len(kids), "error": error, "exit_codes": sorted(set(codes))}))
assert error == "EAGAIN"
