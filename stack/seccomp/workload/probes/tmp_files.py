"""Probe: writes, changes and removes files on the /tmp tmpfs; the read-only root refuses."""

import errno
import json
import os
import shutil
import tempfile

out = {}
d = tempfile.mkdtemp(dir="/tmp")
p = os.path.join(d, "f.txt")
with open(p, "w") as f:
    f.write("x" * 10000)
    f.flush()
    os.fsync(f.fileno())
os.rename(p, p + ".2")
os.stat(p + ".2")
os.chmod(p + ".2", 0o600)
os.utime(p + ".2")
with open(p + ".2", "rb") as f:
    f.read()
    f.seek(0)
    f.read(10)
os.truncate(p + ".2", 10)
os.symlink(p + ".2", p + ".ln")
os.readlink(p + ".ln")
os.makedirs(os.path.join(d, "a", "b"))
out["listdir"] = sorted(os.listdir(d))
out["access"] = os.access(p + ".2", os.W_OK)
filler = os.path.join(d, "fill")
try:
    with open(filler, "wb") as f:
        for _ in range(64):
            f.write(b"\0" * (1 << 20))
            f.flush()
except OSError as e:
    out["fill"] = errno.errorcode[e.errno]
st = os.statvfs("/tmp")
out["tmp_blocks"] = st.f_blocks
shutil.rmtree(d)
for target in ("/probe", "/app/probe", "/usr/lib/probe", "/etc/passwd"):
    try:
        open(target, "a").close()
        out[target] = "written"
    except OSError as e:
        out[target] = errno.errorcode[e.errno]
for call in (
    lambda: os.mkdir("/probe"),
    lambda: os.chmod("/app/launch.py", 0o777),
    lambda: os.unlink("/app/launch.py"),
    lambda: os.rename("/app", "/app2"),
):
    try:
        call()
        out.setdefault("writes", []).append("done")
    except OSError as e:
        out.setdefault("writes", []).append(errno.errorcode[e.errno])
print(json.dumps(out))
assert out["/probe"] == "EROFS" and out.get("fill") == "ENOSPC"
