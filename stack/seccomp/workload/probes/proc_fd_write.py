"""Probe: writes to the server's and init's stdout through /proc/<pid>/fd."""

import json
import os

out = {}
server = None
for p in os.listdir("/proc"):
    if p.isdigit() and int(p) != os.getpid():
        try:
            argv = open(f"/proc/{p}/cmdline", "rb").read().split(b"\0")
        except OSError:
            continue
        if len(argv) > 1 and argv[1] == b"/app/launch.py":
            server = int(p)
for path in (f"/proc/{server}/fd/1", "/proc/1/fd/2", "/proc/self/fd/1"):
    try:
        with open(path, "w") as f:
            f.write("qcrec probe: a line written through " + path + "\n")
        out[path] = "written"
    except OSError as e:
        out[path] = str(e)
print(json.dumps(out))
