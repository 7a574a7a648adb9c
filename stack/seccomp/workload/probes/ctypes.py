"""Probe: raw syscalls, library lookup and callbacks through ctypes."""

import ctypes
import ctypes.util
import json
import os

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
out = {"getpid": libc.syscall(39) == os.getpid(), "getuid": libc.syscall(102)}
libc6 = ctypes.CDLL("libc.so.6", use_errno=True)
out["find_library"] = ctypes.util.find_library("c")
buf = ctypes.create_string_buffer(64)
libc6.gethostname(buf, 64)
out["host"] = buf.value.decode()
ctypes.set_errno(0)
out["errno"] = ctypes.get_errno()
callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)(lambda x: x + 1)
out["cb"] = callback(1)
print(json.dumps(out))
assert out["getpid"]
