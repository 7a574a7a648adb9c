"""The `qcstack` command line: build, bring up, test and inspect the stack."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from pydantic import ValidationError

from stack.compose import ComposeProject
from stack.falco.cli import add_falco_commands
from stack.process import CommandError, run, step
from stack.settings import Settings
from stack.suites import prepare_test_secrets, pytest_command, remove_test_stacks, test_project

if TYPE_CHECKING:
    from stack.deploy.plan import DeployPlan
    from stack.testvm import VmAccess

Handler = Callable[[Settings, argparse.Namespace], int]


def operator_project(settings: Settings) -> ComposeProject:
    return ComposeProject(
        settings,
        settings.project_name,
        settings.secrets_dir,
        settings.egress_subnet,
        settings.gateway_port,
        settings.responder_port,
    )


def cmd_build(settings: Settings, args: argparse.Namespace) -> int:
    from stack.build.images import build_all

    for tag in build_all(settings):
        print(tag)
    return 0


def cmd_up(settings: Settings, args: argparse.Namespace) -> int:
    from stack.secrets import ensure_secrets

    ensure_secrets(settings.secrets_dir, interactive=True)
    cmd_build(settings, args)
    project = operator_project(settings)
    with step(f"start compose project {project.name}"):
        project.up()
    project.run("ps")
    return 0


def cmd_down(settings: Settings, args: argparse.Namespace) -> int:
    project = operator_project(settings)
    with step(f"stop compose project {project.name}"):
        project.down(remove_volumes=False)
    return 0


def cmd_test(settings: Settings, args: argparse.Namespace) -> int:
    """Unit tests, then a clean test stack with canary credentials and every infra suite."""
    root = settings.repo_root
    with step("unit tests (no Docker)"):
        unit = run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", str(root / "tests")],
            check=False,
        )
    if unit.returncode != 0:
        return unit.returncode
    cmd_build(settings, args)
    prepare_test_secrets(settings)
    project = test_project(settings)
    with step(f"clean start of compose project {project.name}"):
        remove_test_stacks(settings)
        project.up()
    try:
        with step("infra suites"):
            infra = run(
                pytest_command(
                    settings, project.name, str(root / "infra_tests"), *args.pytest_args
                ),
                check=False,
            )
        if infra.returncode != 0:
            print(project.logs(), file=sys.stderr)
        return infra.returncode
    finally:
        if not args.keep:
            project.down(remove_volumes=True)


def cmd_controls(settings: Settings, args: argparse.Namespace) -> int:
    from stack.readme import README_PATH, render_table, update_readme

    if args.write_readme:
        changed = update_readme(README_PATH)
        print(f"{README_PATH.name}: {'updated' if changed else 'already current'}")
    else:
        print(render_table())
    return 0


def cmd_mutation_check(settings: Settings, args: argparse.Namespace) -> int:
    from stack.build.base import ensure_base_image
    from stack.controls import CONTROLS
    from stack.mutation import check_in_lanes, mutable_controls, rules_controls

    known = {c.id for c in CONTROLS}
    unknown = sorted(set(args.control) - known)
    if unknown:
        raise CommandError(f"no control {', '.join(unknown)}; `qcstack controls` lists them")
    wanted = set(args.control) or known
    in_stack = [c for c in mutable_controls() if c.id in wanted]
    in_rules = [c for c in rules_controls() if c.id in wanted]
    if not in_stack + in_rules:
        raise CommandError(
            f"{', '.join(sorted(wanted))}: nothing here switches it off (HOST controls: "
            "`qcstack vm-mutation-check`)"
        )
    cmd_build(settings, args)
    base = ensure_base_image(settings)
    prepare_test_secrets(settings)
    remove_test_stacks(settings)
    results = check_in_lanes(settings, in_stack, in_rules, base)
    print("\nmutation check: each control switched off alone, its tests expected red")
    for result in results:
        print("  " + result.summary())
    switched = mutable_controls() + rules_controls()
    untouched = [c.id for c in CONTROLS if c not in switched]
    print(
        "  not switched off here (no compose override removes them; their tests attack "
        "them directly): " + ", ".join(untouched)
    )
    return 0 if all(r.covered for r in results) else 1


def admin_api(settings: Settings, args: argparse.Namespace) -> Any:
    from stack.admin_api import AdminApi, admin_credential

    name, password = admin_credential(settings.secrets_dir, args.admin)
    return AdminApi(f"http://127.0.0.1:{settings.gateway_port}/admin/api", name, password)


def when(timestamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp)) if timestamp else "-"


def cmd_approvals(settings: Settings, args: argparse.Namespace) -> int:
    api = admin_api(settings, args)
    if args.action == "list":
        approvals = api.get("/approvals" + ("" if args.all else "?state=pending"))
        if not approvals:
            print("no call is waiting for a decision" if not args.all else "no approvals")
        for a in approvals:
            summary = a["summary"]
            print(
                f"{a['id']}  {a['state']:<8}  {a['tool']}  project {summary['Project'] or '-'}  "
                f"brokerage {summary['Brokerage'] or '-'}  held {when(a['created'])}"
                + (f"  by {a['decided_by']}" if a["decided_by"] else "")
            )
        return 0
    if not args.id:
        raise CommandError(f"`qcstack approvals {args.action}` needs the approval's ID")
    path = f"/approvals/{quote(args.id, safe='')}"
    if args.action == "show":
        print(json.dumps(api.get(path), indent=2, sort_keys=True))
        return 0
    decided = api.post(f"{path}/{args.action}")
    print(f"{decided['id']} ({decided['tool']}): {decided['state']} by {decided['decided_by']}")
    return 0


def cmd_lockdown(settings: Settings, args: argparse.Namespace) -> int:
    api = admin_api(settings, args)
    if args.action == "engage":
        if not args.reason:
            raise CommandError("`qcstack lockdown engage` needs --reason, for the audit log")
        state = api.post("/lockdown/engage", {"reason": args.reason})
    elif args.action == "lift":
        state = api.post("/lockdown/lift")
    else:
        state = api.get("/lockdown")
    if state["locked"]:
        print(f"lockdown ENGAGED since {when(state['since'])} by {state['by']}: {state['reason']}")
    else:
        lifted = f" (lifted {when(state['since'])} by {state['by']})" if state["by"] else ""
        print(f"lockdown not engaged{lifted}")
    return 0


AUDITED_SERVICES = {"gateway": "gateway.audit", "falco-responder": "responder.audit"}
"""The services that keep a hash-chained audit log, and the module that verifies each."""


def cmd_audit_verify(settings: Settings, args: argparse.Namespace) -> int:
    """Runs the service's own verifier inside its container, on the log in its volume."""
    project = operator_project(settings)
    project.write_rendered_files()
    module = AUDITED_SERVICES[args.service]
    command = project.command("exec", "-T", args.service, "/usr/bin/python3", "-m", module)
    result = run([*command, "verify"], env=project.environment(), check=False)
    return result.returncode


def cmd_traces(settings: Settings, args: argparse.Namespace) -> int:
    """Prints the collector's recent traces as trees of spans."""
    from stack import traces

    if args.last < 1:
        raise CommandError("--last takes how many traces to show: 1 or more")
    lines = traces.read_collector_files(operator_project(settings))
    roots = traces.trees(traces.parse_lines(lines))
    if args.trace:
        roots = [root for root in roots if root.trace_id == args.trace.lower()]
    else:
        roots = traces.latest(roots, args.last)
    if not roots:
        print("no traces yet" if not args.trace else f"no trace {args.trace} in the files")
        return 0 if not args.trace else 1
    for line in traces.render(roots):
        print(line)
    return 0


def cmd_seccomp_record(settings: Settings, args: argparse.Namespace) -> int:
    from stack.seccomp.record import record

    record(settings, args.output_dir or settings.seccomp_dir, args.keep_trace)
    return 0


def cmd_seccomp_generate(settings: Settings, args: argparse.Namespace) -> int:
    from stack.seccomp import profile
    from stack.seccomp.services import SERVICES

    directory: Path = args.dir or settings.seccomp_dir
    names = list(SERVICES) if args.service == "all" else [args.service]
    stale = []
    for name in names:
        service = SERVICES[name]
        recorded = profile.read_recorded(service.recorded_file(directory))
        output = service.profile_file(directory)
        text = profile.render_profile(profile.generate_profile(recorded, name))
        if args.check:
            current = output.read_text(encoding="utf-8") if output.exists() else ""
            if current != text:
                stale.append(output)
            else:
                print(f"{output} is up to date")
            continue
        output.write_text(text, encoding="utf-8")
        allowed = profile.allowed_syscalls(recorded.names, name)
        families = ", ".join(profile.allowed_socket_families(recorded, name))
        print(
            f"wrote {output}: {len(allowed)} syscalls allowed outright + clone (no CLONE_NEW*) "
            f"and socket ({families}) by argument"
        )
    for output in stale:
        print(
            f"{output} is not what `qcstack seccomp generate` makes; regenerate it",
            file=sys.stderr,
        )
    return 1 if stale else 0


def cmd_seccomp_verify(settings: Settings, args: argparse.Namespace) -> int:
    from stack.seccomp.verify import verify

    return 0 if verify(settings, args.profile_dir or settings.seccomp_dir) else 1


def add_seccomp_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from stack.seccomp.services import SERVICES

    seccomp = commands.add_parser(
        "seccomp",
        help="record, generate and verify the seccomp allow-lists of "
        f"{', '.join(SERVICES)} (RUN-05)",
    )
    modes = seccomp.add_subparsers(dest="mode", required=True)
    record = modes.add_parser(
        "record", help="record every service's syscalls -> SERVICE.recorded.txt (root)"
    )
    record.add_argument("--output-dir", type=Path, metavar="DIR", help="default: seccomp/")
    record.add_argument("--keep-trace", type=Path, metavar="FILE", help="keep bpftrace's output")
    record.set_defaults(handler=cmd_seccomp_record)
    generate = modes.add_parser("generate", help="SERVICE.recorded.txt -> SERVICE.json")
    generate.add_argument(
        "--service", choices=["all", *SERVICES], default="all", help="default: all"
    )
    generate.add_argument(
        "--dir", type=Path, metavar="DIR", help="where the files are; default: seccomp/"
    )
    generate.add_argument("--check", action="store_true", help="only check the files are current")
    generate.set_defaults(handler=cmd_seccomp_generate)
    verify = modes.add_parser(
        "verify", help="run the workload and the checks with every service's profile enforced"
    )
    verify.add_argument(
        "--profile-dir", type=Path, metavar="DIR", help="where SERVICE.json are; default: seccomp/"
    )
    verify.set_defaults(handler=cmd_seccomp_verify)


def cmd_deploy(settings: Settings, args: argparse.Namespace) -> int:
    """Builds the images here, then deploys them and the stack to the inventory's hosts."""
    from stack.deploy.plan import make_plan
    from stack.deploy.runner import run_deploy

    if args.test_stack:
        secrets_dir = settings.build_dir / "vm-secrets"
        if not (secrets_dir / "qc_api_double_key").exists():
            prepare_test_secrets(settings, secrets_dir)
        project, port = settings.test_project_name, settings.test_gateway_port
    else:
        from stack.secrets import ensure_secrets

        secrets_dir, project, port = (
            settings.secrets_dir,
            settings.project_name,
            settings.gateway_port,
        )
        ensure_secrets(secrets_dir, interactive=True)
    if not args.no_build:
        cmd_build(settings, args)
    plan = make_plan(
        settings,
        project=project,
        secrets_dir=secrets_dir,
        test_stack=args.test_stack,
        gateway_port=port,
    )
    with step(f"{'plan' if args.dry else 'deploy'} compose project {project} to {args.inventory}"):
        result = run_deploy(args.inventory, plan, dry=args.dry)
    print(result.summary())
    return 0


TEST_VM_FALCO_OFF = "the test VM cannot reach Falco's repository, and no Falco package exists here"
"""Why the test VM is deployed with falco=off; HOST-07's tests skip there, saying Falco is not
installed."""


def vm_test_plan(settings: Settings) -> DeployPlan:
    """The deploy plan of a test stack with fresh canary secrets, for the test VM; Falco off."""
    from stack.deploy.plan import make_plan

    return make_plan(
        settings,
        project=settings.test_project_name,
        secrets_dir=prepare_test_secrets(settings, settings.build_dir / "vm-secrets"),
        test_stack=True,
        gateway_port=settings.test_gateway_port,
        falco_off_because=TEST_VM_FALCO_OFF,
    )


def vm_pytest(settings: Settings, vm: VmAccess) -> list[str]:
    """pytest for the infra suites, aimed at the test stack on the test VM over SSH."""
    from stack.deploy import files

    return [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        f"--project={settings.test_project_name}",
        f"--hosts={vm.testinfra_host}",
        f"--ssh-config={vm.ssh_config}",
        f"--stack-secrets-dir={files.SECRETS_DIR}",
    ]


def cmd_vm_test(settings: Settings, args: argparse.Namespace) -> int:
    """A fresh test VM, a pyinfra deploy of a test stack to it, then the infra suites over SSH."""
    from stack.deploy.runner import run_deploy
    from stack.testvm import remove_vm, start_vm

    cmd_build(settings, args)
    project = settings.test_project_name
    plan = vm_test_plan(settings)
    vm = start_vm(settings)
    try:
        with step(f"deploy compose project {project} to the test VM"):
            print(run_deploy(vm.inventory, plan, dry=False).summary())
        pytest = vm_pytest(settings, vm)
        with step("infra suites against the test VM over SSH"):
            suites = args.pytest_args or [str(settings.repo_root / "infra_tests")]
            result = run([*pytest, *suites], check=False)
        if result.returncode != 0:
            return result.returncode
        with step("upgrades, a rollback and a reboot of the test VM, last and alone"):
            host_suite = settings.repo_root / "infra_tests" / "test_host.py"
            return run(
                [*pytest, "--disruptive", "-k", "an_upgrade or starts_at_boot", str(host_suite)],
                check=False,
            ).returncode
    finally:
        if not args.keep:
            with step(f"remove the test VM {vm.name}"):
                remove_vm(settings)


def cmd_vm_mutation_check(settings: Settings, args: argparse.Namespace) -> int:
    """Switches each HOST control off on a deployed test VM, shows its tests go red, and shows
    the deploy switches it back on."""
    from stack.controls import CONTROLS
    from stack.deploy.runner import run_deploy
    from stack.mutation import MutationResult, read_report
    from stack.testvm import remove_vm, start_vm

    cmd_build(settings, args)
    plan = vm_test_plan(settings)
    vm = start_vm(settings)
    suite = str(settings.repo_root / "infra_tests" / "test_host.py")
    reports = settings.build_dir / "mutations"
    reports.mkdir(parents=True, exist_ok=True)
    results: list[MutationResult] = []
    restored: dict[str, bool] = {}
    try:
        with step(f"deploy compose project {settings.test_project_name} to the test VM"):
            run_deploy(vm.inventory, plan, dry=False)
        for control in CONTROLS:
            if control.disable_on_host is None or (args.control and control.id not in args.control):
                continue
            if control.id == "HOST-07" and plan.falco.mode == "off":
                print(
                    f"HOST-07 not switched off: Falco is off on the test VM ({TEST_VM_FALCO_OFF})"
                )
                continue
            with step(f"{control.id} switched off on the VM: {control.title}"):
                report = reports / f"vm-{control.id}.json"
                report.unlink(missing_ok=True)
                vm.ssh(control.disable_on_host)
                run(
                    [
                        *vm_pytest(settings, vm),
                        "-q",
                        f"--control={control.id}",
                        f"--control-report={report}",
                        suite,
                    ],
                    check=False,
                    capture=True,  # red tests are the point here
                )
                red, total = read_report(report, control.id)
                results.append(MutationResult(control.id, red, total))
                # Switched back on means: the deploy puts it back, and its tests pass again.
                run_deploy(vm.inventory, plan, dry=False)
                again = run(
                    [*vm_pytest(settings, vm), "-q", f"--control={control.id}", suite],
                    check=False,
                    capture=True,
                )
                restored[control.id] = again.returncode == 0
        with step("a last deploy finds nothing left to restore"):
            clean = not run_deploy(vm.inventory, plan, dry=False).changed
    finally:
        with step(f"remove the test VM {vm.name}"):
            remove_vm(settings)
    print("\nVM mutation check: each HOST control switched off alone on the deployed VM")
    for result in results:
        back = (
            "the deploy switched it back on (its tests pass again)"
            if restored[result.control]
            else "NOT RESTORED by the deploy"
        )
        print(f"  {result.summary()}; {back}")
    print(f"  after every restore, a deploy changed {'nothing' if clean else 'SOMETHING'}")
    untouched = [c.id for c in CONTROLS if c.id.startswith("HOST-") and not c.disable_on_host]
    if untouched:
        print("  not switched off here (their tests attack them directly): " + ", ".join(untouched))
    ok = all(r.covered for r in results) and all(restored.values()) and clean
    return 0 if ok else 1


def cmd_vm(settings: Settings, args: argparse.Namespace) -> int:
    from stack.testvm import remove_vm, running_vm, start_vm

    if args.action == "up":
        vm = start_vm(settings)
        print(f"test VM {vm.name} at {vm.address}: ssh -F {vm.ssh_config} {vm.name}")
        print(f"pyinfra inventory: {vm.inventory}")
    elif args.action == "down":
        with step(f"remove the test VM {settings.test_vm_name}"):
            remove_vm(settings)
    else:
        vm = running_vm(settings)
        print(f"ssh -F {vm.ssh_config} {vm.name}")
    return 0


def add_admin_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    who = argparse.ArgumentParser(add_help=False)
    who.add_argument(
        "--admin", metavar="NAME", help="act as this admin of secrets/gateway_admins (the first)"
    )
    approvals = commands.add_parser(
        "approvals", parents=[who], help="list, show, approve or deny calls held for a person"
    )
    approvals.add_argument("action", choices=["list", "show", "approve", "deny"])
    approvals.add_argument("id", nargs="?", help="the approval's ID (from `approvals list`)")
    approvals.add_argument("--all", action="store_true", help="list decided approvals too")
    approvals.set_defaults(handler=cmd_approvals)
    lockdown = commands.add_parser(
        "lockdown", parents=[who], help="the kill switch: engage, lift or show (default) lockdown"
    )
    lockdown.add_argument(
        "action", nargs="?", choices=["engage", "lift", "status"], default="status"
    )
    lockdown.add_argument("--reason", help="why lockdown is engaged (recorded in the audit log)")
    lockdown.set_defaults(handler=cmd_lockdown)
    audit = commands.add_parser(
        "audit", help="check the hash-chained audit log of the gateway (or the responder)"
    )
    audit.add_argument("action", choices=["verify"])
    audit.add_argument("--service", choices=sorted(AUDITED_SERVICES), default="gateway")
    audit.set_defaults(handler=cmd_audit_verify)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="qcstack", description=__doc__)
    commands = top.add_subparsers(dest="command", required=True)
    commands.add_parser("build", help="build every image from local inputs").set_defaults(
        handler=cmd_build
    )
    commands.add_parser("up", help="build and start the stack").set_defaults(handler=cmd_up)
    commands.add_parser("down", help="stop the stack").set_defaults(handler=cmd_down)
    test = commands.add_parser("test", help="run every suite against a fresh test stack")
    test.add_argument("--keep", action="store_true", help="leave the test stack running")
    test.add_argument("pytest_args", nargs="*", help="extra pytest arguments for the infra suites")
    test.set_defaults(handler=cmd_test)
    controls = commands.add_parser("controls", help="print the threat-model table")
    controls.add_argument(
        "--write-readme", action="store_true", help="regenerate the table in README.md"
    )
    controls.set_defaults(handler=cmd_controls)
    mutation = commands.add_parser(
        "mutation-check", help="switch each control off in turn and show its tests go red"
    )
    mutation.add_argument("--control", action="append", default=[], help="only this control ID")
    mutation.set_defaults(handler=cmd_mutation_check)
    traces = commands.add_parser("traces", help="show recent traces as trees of spans")
    traces.add_argument("--last", type=int, default=10, metavar="N", help="default: 10")
    traces.add_argument("--trace", metavar="ID", help="only this trace (32 hex digits)")
    traces.set_defaults(handler=cmd_traces)
    add_seccomp_commands(commands)
    add_falco_commands(commands)
    add_admin_commands(commands)
    deploy = commands.add_parser(
        "deploy", help="deploy the stack to Debian 12 hosts over SSH with pyinfra"
    )
    deploy.add_argument("inventory", type=Path, help="a pyinfra inventory file (see deploy/)")
    deploy.add_argument("--dry", action="store_true", help="show what would change, change nothing")
    deploy.add_argument(
        "--no-build", action="store_true", help="ship the images as built; refuse if one is missing"
    )
    deploy.add_argument(
        "--test-stack",
        action="store_true",
        help="a test stack (canary secrets, the QuantConnect API double) for the infra suites",
    )
    deploy.set_defaults(handler=cmd_deploy)
    vm_test = commands.add_parser(
        "vm-test",
        help="deploy a test stack to a fresh test VM with pyinfra and run the infra suites on it",
    )
    vm_test.add_argument("--keep", action="store_true", help="leave the test VM running")
    vm_test.add_argument(
        "pytest_args", nargs="*", help="pytest arguments instead of the whole infra_tests/"
    )
    vm_test.set_defaults(handler=cmd_vm_test)
    vm_mutation = commands.add_parser(
        "vm-mutation-check",
        help="switch each HOST control off on a deployed test VM and show its tests go red",
    )
    vm_mutation.add_argument("--control", action="append", default=[], help="only this control ID")
    vm_mutation.set_defaults(handler=cmd_vm_mutation_check)
    vm = commands.add_parser(
        "vm", help="start or remove the test VM (a systemd container with sshd and dockerd)"
    )
    vm.add_argument("action", choices=["up", "down", "ssh"], help="ssh: print how to log in")
    vm.set_defaults(handler=cmd_vm)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        settings = Settings()
        return handler(settings, args)
    except CommandError as error:
        print(f"qcstack: {error}", file=sys.stderr)
        return 1
    except ValidationError as error:
        print(f"qcstack: a setting is wrong (QCSTACK_* or qcstack.env):\n{error}", file=sys.stderr)
        return 1
