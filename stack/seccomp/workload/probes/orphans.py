"""Probe: an orphaned grandchild is reaped by the init (no zombies left)."""

import json
import os
import time

pid = os.fork()
if pid == 0:
    os.setsid()
    if os.fork() == 0:
        time.sleep(0.5)
        os._exit(0)
    os._exit(0)
os.waitpid(pid, 0)
time.sleep(2)
zombies = []
for p in os.listdir("/proc"):
    if p.isdigit():
        try:
            state = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state == "Z":
            zombies.append(int(p))
print(json.dumps({"zombies": zombies}))
assert not zombies
