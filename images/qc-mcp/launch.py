"""Starts the unmodified QuantConnect MCP server with credentials read from secret files (SEC-01).

The server reads QUANTCONNECT_USER_ID and QUANTCONNECT_API_TOKEN from its environment at import
time. They are set here, inside this one process, so they never appear in the container's
configuration or in /proc/<pid>/environ (which shows only the environment given at exec).
"""

import os
import runpy
import sys

SECRET_FILES = {
    "QUANTCONNECT_USER_ID": "/run/secrets/qc_user_id",
    "QUANTCONNECT_API_TOKEN": "/run/secrets/qc_api_token",
}


def read_secret(name: str, path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            value = handle.read().strip()
    except OSError as error:
        sys.exit(
            f"qc-mcp: cannot read secret {name} from {path} ({error.strerror}); "
            "mount it as a Docker secret readable by uid 10001"
        )
    if not value:
        sys.exit(f"qc-mcp: secret {name} in {path} is empty; write the credential into it")
    return value


def main() -> None:
    leaked = sorted(name for name in SECRET_FILES if name in os.environ)
    if leaked:
        sys.exit(f"qc-mcp: {', '.join(leaked)} set in the environment; pass only secret files")
    for name, path in SECRET_FILES.items():
        os.environ[name] = read_secret(name, path)
    sys.argv = ["quantconnect-mcp-server"]
    runpy.run_module("main", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
