"""Runs the deploy with pyinfra's API: connect, plan, then show the plan (--dry) or apply it.

pyinfra's own output is kept to warnings: this module prints each operation's name and whether
it changed anything. Names never carry a secret, and pyinfra's diff mode (which prints the
contents of changed files) is never switched on.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from stack.deploy.plan import DeployPlan
from stack.process import CommandError


@dataclass(frozen=True)
class OperationOutcome:
    name: str
    changed: bool
    conditional: bool = False
    """Runs only when an earlier operation changes something."""
    failed: bool = False
    """Ran and failed, or never ran because an earlier one failed."""


@dataclass(frozen=True)
class DeployResult:
    """Every operation of the run (or the plan, when dry) and whether it changed something."""

    dry: bool
    operations: tuple[OperationOutcome, ...]

    @property
    def changed(self) -> tuple[str, ...]:
        return tuple(op.name for op in self.operations if op.changed)

    @property
    def failed(self) -> tuple[str, ...]:
        return tuple(op.name for op in self.operations if op.failed)

    def summary(self) -> str:
        verb = "would change" if self.dry else "changed"
        lines = [
            f"  {'!' if op.failed else '*' if op.changed else ' '} {op.name}"
            + (" (failed, or not run after a failure)" if op.failed else "")
            + (
                " (because what it depends on would change)"
                if op.changed and op.conditional
                else ""
            )
            for op in self.operations
        ]
        total = len(self.changed)
        lines.append(
            f"{total} of {len(self.operations)} operations {verb} something"
            if total
            else f"no changes: all {len(self.operations)} operations found the VM as planned"
        )
        return "\n".join(lines)


def run_deploy(inventory: Path, plan: DeployPlan, *, dry: bool) -> DeployResult:
    """Deploys `plan` to every host of the pyinfra inventory file; with dry, only plans."""
    # gevent must patch the standard library before pyinfra (and paramiko) import it.
    from gevent import monkey

    monkey.patch_all()

    from pyinfra.api.config import Config
    from pyinfra.api.connect import connect_all, disconnect_all
    from pyinfra.api.deploy import add_deploy
    from pyinfra.api.exceptions import PyinfraError
    from pyinfra.api.operations import run_ops
    from pyinfra.api.state import State, StateStage
    from pyinfra.context import ctx_inventory, ctx_state
    from pyinfra_cli.inventory import make_inventory

    from stack.deploy.operations import WhenChanged, deploy_stack

    logging.getLogger("pyinfra").setLevel(logging.WARNING)
    if not logging.getLogger().handlers:
        logging.basicConfig(stream=sys.stderr, format="pyinfra: %(message)s")
    if not inventory.is_file():
        raise CommandError(f"no inventory file {inventory} (see deploy/inventory.example.py)")
    config = Config(DIFF=False, PARALLEL=1, CONNECT_TIMEOUT=15)  # type: ignore[no-untyped-call]
    state = State(check_for_changes=True)
    ctx_state.set(state)  # type: ignore[no-untyped-call]  # pyinfra's inventory loader runs the file in the state's context
    loaded = make_inventory(str(inventory.resolve()))
    ctx_inventory.set(loaded)  # type: ignore[no-untyped-call]
    state.init(loaded, config)
    try:
        state.set_stage(StateStage.Connect)
        connect_all(state)
        failed = [h.name for h in state.inventory if not h.connected]
        if failed or not state.activated_hosts:
            raise CommandError(f"could not connect over SSH to {', '.join(failed) or 'any host'}")
        state.set_stage(StateStage.Prepare)
        add_deploy(state, deploy_stack, plan)
        stopped = None
        if not dry:
            state.set_stage(StateStage.Execute)
            try:
                run_ops(state)
            except PyinfraError as error:  # every host failed: pyinfra stops
                stopped = error
        outcomes = []
        for op_hash in state.get_op_order():  # type: ignore[no-untyped-call]
            name = sorted(state.op_meta[op_hash].names)[0]
            changed = conditional = broke = False
            for host in state.inventory:
                if op_hash not in state.ops[host]:
                    continue
                data = state.get_op_data_for_host(host, op_hash)
                meta = data.operation_meta
                condition = data.global_arguments.get("_if")
                if not dry:
                    if meta.did_succeed(_raise_if_not_complete=False):
                        changed |= bool(meta.did_change())
                    else:
                        broke = True
                elif isinstance(condition, WhenChanged):
                    # Runs only if what it depends on changes: planned when that is planned.
                    depends = any(bool(m._maybe_is_change) for m in condition.depends_on)
                    changed |= bool(meta._maybe_is_change) and depends
                    conditional = True
                else:
                    changed |= bool(meta._maybe_is_change)
            outcomes.append(OperationOutcome(name, changed, conditional, broke))
        result = DeployResult(dry, tuple(outcomes))
        if stopped is not None or state.failed_hosts:
            print(result.summary(), file=sys.stderr)
            names = ", ".join(h.name for h in state.failed_hosts) or "every host"
            raise CommandError(f"the deploy failed on {names}: see the errors above")
        return result
    except PyinfraError as error:
        raise CommandError(f"pyinfra: {error}") from error
    finally:
        state.set_stage(StateStage.Disconnect)
        disconnect_all(state)
