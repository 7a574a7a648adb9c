"""Probe: a binary copied to the noexec /tmp refuses to run; python3 itself runs."""

import errno
import json
import os
import shutil
import subprocess
import sys

out = {}
shutil.copy("/usr/bin/python3", "/tmp/qcrec-exec")
os.chmod("/tmp/qcrec-exec", 0o755)
try:
    subprocess.run(["/tmp/qcrec-exec", "-c", "pass"], check=False)
    out["subprocess"] = "ran"
except OSError as e:
    out["subprocess"] = errno.errorcode[e.errno]
pid = os.fork()
if pid == 0:
    try:
        os.execv("/tmp/qcrec-exec", ["/tmp/qcrec-exec", "-c", "pass"])
    except OSError as e:
        os._exit(e.errno)
out["execv"] = errno.errorcode.get(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), "ran")
done = subprocess.run([sys.executable, "-c", "print(6 * 7)"], capture_output=True, text=True)
out["python"] = done.stdout.strip()
try:
    subprocess.run(["/bin/sh", "-c", "id"])
    out["sh"] = "ran"
except OSError as e:
    out["sh"] = errno.errorcode[e.errno]
os.unlink("/tmp/qcrec-exec")
print(json.dumps(out))
assert out["subprocess"] == "EACCES" and out["execv"] == "EACCES" and out["python"] == "42"
