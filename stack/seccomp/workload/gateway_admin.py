"""Run in the gateway with `docker exec`, as an operator's tooling would: engage or lift lockdown
through its flag file, or verify the audit log's chain, on the gateway's state volume."""

import json
import sys
from pathlib import Path

from gateway.audit import verify
from gateway.lockdown import Lockdown

STATE = Path("/var/lib/qcstack-gateway")
action = sys.argv[1]
lockdown = Lockdown(STATE / "lockdown.json")
if action == "engage":
    print(json.dumps(lockdown.engage("qcstack seccomp workload", "recording").__dict__))
elif action == "lift":
    print(json.dumps(lockdown.lift("qcstack seccomp workload").__dict__))
elif action == "audit":
    result = verify(STATE / "audit.jsonl")
    print(json.dumps({"ok": result.ok, "entries": result.entries, "reason": result.reason}))
else:
    sys.exit("usage: gateway_admin.py engage|lift|audit")
