"""The responder's audit log (servicebase/audit.py), and its verifier aimed at the responder's
state: `python3 -m responder.audit verify [PATH]`."""

from __future__ import annotations

import sys
from pathlib import Path

from servicebase.audit import verify_command


def default_path() -> Path:
    from responder.settings import ResponderSettings

    return ResponderSettings().audit_path


main = verify_command("responder", default_path)

if __name__ == "__main__":
    sys.exit(main())
