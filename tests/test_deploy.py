"""The deploy's rendered files, its plan and its summary, without a VM or Docker."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from stack.build.images import IMAGES
from stack.deploy import files, plan
from stack.deploy.operations import WhenChanged
from stack.deploy.runner import DeployResult, OperationOutcome
from stack.process import CommandError
from stack.secrets import STACK_SECRETS
from stack.settings import Settings
from stack.testvm import VmAccess, write_access_files

SECRET_VALUE = "qcstack-unit-canary-4c2b9e"  # noqa: S105 - a planted canary


def test_daemon_json_sets_every_hardening_option() -> None:
    config = json.loads(files.daemon_json())
    assert config["no-new-privileges"] is True
    assert config["live-restore"] is True
    assert config["icc"] is False
    assert config["userland-proxy"] is False
    assert config["log-driver"] == "json-file"
    assert config["log-opts"] == {"max-size": "10m", "max-file": "3"}


def test_sshd_drop_in_allows_keys_only() -> None:
    lines = dict(line.split(" ", 1) for line in files.sshd_drop_in().splitlines()[1:])
    assert lines["PasswordAuthentication"] == "no"
    assert lines["KbdInteractiveAuthentication"] == "no"
    assert lines["AuthenticationMethods"] == "publickey"
    assert lines["PermitRootLogin"] == "prohibit-password"
    assert lines["AllowTcpForwarding"] == "no"


def test_firewall_admits_ssh_alone_and_never_flushes_dockers_rules() -> None:
    rules = files.firewall_rules()
    assert "flush ruleset" not in rules  # Docker's tables must survive a reload
    assert "policy drop;" in rules
    accepted_ports = [line for line in rules.splitlines() if "dport" in line]
    assert accepted_ports == [f"    tcp dport {files.SSH_PORT} accept"]
    # Declared, deleted, declared: loading it replaces only qcstack's own table.
    assert rules.count(f"table inet {files.FIREWALL_TABLE}") == 3


def test_stack_unit_never_pulls_and_outlives_a_docker_restart() -> None:
    unit = files.stack_unit("qcstack", test_stack=False)
    assert unit.count("--pull never") == 2
    assert "Wants=docker.service" in unit and "Requires=" not in unit
    assert "test.yaml" not in unit
    assert "--volumes" not in unit  # a stop keeps the audit log and approvals
    assert "test.yaml" in files.stack_unit("qcstack-test", test_stack=True)


def test_auto_upgrades_run_daily_from_the_security_archive() -> None:
    assert 'APT::Periodic::Unattended-Upgrade "1";' in files.auto_upgrades()
    assert "-security,label=Debian-Security" in files.unattended_upgrades()


def test_compose_plugin_is_pinned_by_version_and_sha256() -> None:
    script = files.install_compose_plugin("http://deb.debian.org/debian")
    assert f"docker-compose={files.COMPOSE_DEB_VERSION}" in script
    assert f"{files.COMPOSE_DEB_SHA256}  docker-compose_" in script
    assert script.index("sha256sum -c") < script.index("dpkg-deb -x")


def test_image_check_names_and_removes_the_tag_that_differs() -> None:
    script = files.verify_images([("qcstack/qc-mcp:x", "sha256:" + "a" * 64)])
    assert "set -eu" in script
    assert "qcstack/qc-mcp:x is not sha256:" in script
    assert "docker image rm --no-prune qcstack/qc-mcp:x" in script
    assert script.rstrip().endswith('exit "$status"')


def write_secrets(directory: Path, names: tuple[str, ...]) -> None:
    directory.mkdir(exist_ok=True)
    for name in names:
        (directory / name).write_text(SECRET_VALUE)


def test_plan_refuses_a_missing_or_empty_secret_naming_the_file(tmp_path: Path) -> None:
    write_secrets(tmp_path, STACK_SECRETS)
    (tmp_path / "qc_api_token").write_text("")
    (tmp_path / "gateway_token").unlink()
    with pytest.raises(CommandError) as refused:
        plan.plan_secrets(tmp_path, test_stack=False)
    assert f"{tmp_path / 'qc_api_token'} is empty" in str(refused.value)
    assert f"{tmp_path / 'gateway_token'} is missing" in str(refused.value)
    assert SECRET_VALUE not in str(refused.value)


def test_test_deploys_also_ship_the_api_doubles_certificates(tmp_path: Path) -> None:
    write_secrets(tmp_path, STACK_SECRETS)
    names = {s.name for s in plan.plan_secrets(tmp_path, test_stack=False)}
    assert names == set(STACK_SECRETS)
    with pytest.raises(CommandError, match="qc_test_ca is missing"):
        plan.plan_secrets(tmp_path, test_stack=True)


def test_plan_holds_secrets_by_path_never_by_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_secrets(tmp_path, (*STACK_SECRETS, *plan.TEST_SECRET_NAMES))
    monkeypatch.setattr(
        plan, "image_ids", lambda tags: tuple(plan.Image(t, "sha256:" + "0" * 64) for t in tags)
    )
    made = plan.make_plan(
        Settings(),
        project="qcstack",
        secrets_dir=tmp_path,
        test_stack=True,
        gateway_port=18080,
    )
    assert SECRET_VALUE not in repr(made)
    for secret in made.secrets:
        assert secret.dest == f"{files.SECRETS_DIR}/{secret.name}"
        assert secret.source == tmp_path / secret.name
    owners = {s.name: s.uid for s in made.secrets}
    assert owners["qc_api_token"] == 10001 and owners["gateway_token"] == 10004
    env = made.rendered[files.COMPOSE_ENV][0]
    assert f"QCSTACK_SECRETS_DIR={files.SECRETS_DIR}\n" in env
    assert "QCSTACK_GATEWAY_PORT=18080\n" in env
    assert f"{files.DOUBLES_DIR}/qc_api.py" in made.copied
    assert {Path(p).name for p in made.copied if p.startswith(files.SECCOMP_DIR)} == {
        f"{recipe.name}.json" for recipe in IMAGES
    }
    assert owners["responder_token"] == 10007
    assert f"QCSTACK_RESPONDER_PORT={Settings().test_responder_port}\n" in env
    assert f"QCSTACK_RESPONDER_ENV={files.RESPONDER_ENV}\n" in env


class FakeMeta:
    def __init__(self, changed: bool) -> None:
        self.changed = changed

    def did_change(self) -> bool:
        return self.changed


def test_a_conditional_operation_runs_only_when_what_it_depends_on_changed() -> None:
    assert WhenChanged(FakeMeta(False), FakeMeta(True))()  # type: ignore[arg-type]
    assert not WhenChanged(FakeMeta(False))()  # type: ignore[arg-type]


def test_summary_says_when_nothing_changed() -> None:
    result = DeployResult(False, (OperationOutcome("a", False), OperationOutcome("b", False)))
    assert result.summary().endswith("no changes: all 2 operations found the VM as planned")
    dry = DeployResult(True, (OperationOutcome("a", True), OperationOutcome("b", True, True)))
    assert "2 of 2 operations would change something" in dry.summary()
    assert "  * b (because what it depends on would change)" in dry.summary()


def test_test_vm_access_checks_the_host_key_and_never_uses_a_password(tmp_path: Path) -> None:
    vm = VmAccess("qcstack-vm", "10.231.244.10", tmp_path)
    write_access_files(vm, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTheUnitTest")
    config = vm.ssh_config.read_text()
    assert "StrictHostKeyChecking yes" in config
    assert "PasswordAuthentication no" in config
    assert vm.known_hosts.read_text().startswith("10.231.244.10 ssh-ed25519 ")
    module = ast.parse(vm.inventory.read_text())
    hosts = ast.literal_eval(module.body[-1].value)  # type: ignore[attr-defined]
    assert hosts == [
        (
            "10.231.244.10",
            {
                "ssh_user": "root",
                "ssh_key": str(vm.key),
                "ssh_known_hosts_file": str(vm.known_hosts),
                "ssh_strict_host_key_checking": "yes",
                "ssh_allow_agent": False,
                "ssh_look_for_keys": False,
            },
        )
    ]


def test_test_vm_subnet_stays_out_of_dockers_default_pools() -> None:
    with pytest.raises(ValueError, match=r"inside 172\.16\.0\.0/12"):
        Settings(test_vm_subnet="172.20.0.0/24")  # type: ignore[arg-type]


def test_a_failed_upgrade_tags_the_previous_images_again_and_fails() -> None:
    script = files.upgrade_with_rollback([("qcstack/qc-mcp:x", "sha256:" + "b" * 64)])
    first, _, rest = script.partition("rolling back")
    assert f"systemctl reload {files.STACK_UNIT}" in first
    assert f"docker tag sha256:{'b' * 64} qcstack/qc-mcp:x" in rest
    assert rest.index("docker tag") < rest.index("systemctl reload")
    assert script.rstrip().endswith("exit 1")  # the deploy fails even when the rollback works


def test_compose_waits_a_bounded_time_for_health() -> None:
    unit = files.stack_unit("qcstack", test_stack=False)
    assert unit.count(f"--wait-timeout {files.WAIT_SECONDS}") == 2
    timeout = int(unit.split("TimeoutStartSec=")[1].split()[0])
    assert timeout > files.WAIT_SECONDS
