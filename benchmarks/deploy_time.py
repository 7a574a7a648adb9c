"""Times a fresh pyinfra deploy of a test stack to a new test VM, and a no-change redeploy."""

from __future__ import annotations

import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from stack.build.images import build_all  # noqa: E402
from stack.deploy.plan import make_plan  # noqa: E402
from stack.deploy.runner import run_deploy  # noqa: E402
from stack.process import CommandError  # noqa: E402
from stack.settings import Settings  # noqa: E402
from stack.suites import prepare_test_secrets  # noqa: E402
from stack.testvm import remove_vm, start_vm  # noqa: E402

TARGET_REDEPLOY_SECONDS = 15.0


def main() -> int:
    settings = Settings()
    try:
        build_all(settings)
        plan = make_plan(
            settings,
            project=settings.test_project_name,
            secrets_dir=prepare_test_secrets(settings, settings.build_dir / "vm-secrets"),
            test_stack=True,
            gateway_port=settings.test_gateway_port,
        )
        vm = start_vm(settings)
    except CommandError as error:
        print(f"deploy_time: cannot measure: {error}", file=sys.stderr)
        return 1
    try:
        started = time.monotonic()
        fresh = run_deploy(vm.inventory, plan, dry=False)
        fresh_seconds = time.monotonic() - started
        started = time.monotonic()
        again = run_deploy(vm.inventory, plan, dry=False)
        again_seconds = time.monotonic() - started
    except CommandError as error:
        print(f"deploy_time: cannot measure: {error}", file=sys.stderr)
        return 1
    finally:
        remove_vm(settings)
    print(
        f"fresh deploy to a new test VM: {fresh_seconds:.1f} s "
        f"({len(fresh.changed)} of {len(fresh.operations)} operations changed something)"
    )
    met = "met" if again_seconds < TARGET_REDEPLOY_SECONDS else "NOT met"
    print(
        f"no-change redeploy: {again_seconds:.1f} s ({len(again.changed)} operations changed "
        f"something; target under {TARGET_REDEPLOY_SECONDS:.0f} s: {met})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
