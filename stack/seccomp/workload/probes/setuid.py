"""Probe: every change of identity fails with EPERM (no capabilities)."""

import errno
import json
import os

out = {}
for name, call in (
    ("setuid", lambda: os.setuid(0)),
    ("setgid", lambda: os.setgid(0)),
    ("seteuid", lambda: os.seteuid(0)),
    ("setegid", lambda: os.setegid(0)),
    ("setreuid", lambda: os.setreuid(0, 0)),
    ("setregid", lambda: os.setregid(0, 0)),
    ("setresuid", lambda: os.setresuid(0, 0, 0)),
    ("setresgid", lambda: os.setresgid(0, 0, 0)),
    ("setgroups", lambda: os.setgroups([0])),
):
    try:
        call()
        out[name] = "ok"
    except OSError as e:
        out[name] = errno.errorcode[e.errno]
out["ids"] = [os.getresuid(), os.getresgid()]
print(json.dumps(out))
assert out["setuid"] == "EPERM" and os.getuid() != 0
