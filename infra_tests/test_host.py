"""HOST controls of a VM deployed with pyinfra, and the deploy's own promises (idempotent, quiet).

These run against the test VM (`bin/qcstack vm-test` starts it, deploys a test stack and runs
the infra suites over SSH); on a local Docker host there is no deployed VM, and they skip.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from infra_tests.conftest import (
    Container,
    gateway_audit,
    gateway_calls,
    responder_audit,
    stack_container,
)
from infra_tests.dockerhost import DockerHost
from stack.build.images import IMAGES
from stack.deploy import falco, files
from stack.deploy.plan import TEST_SECRET_NAMES
from stack.secrets import STACK_SECRETS, owner
from stack.settings import Settings
from stack.testdata import (
    CANARY_API_TOKEN,
    CANARY_BROKERAGE_PASSWORD,
    TEST_ADMIN_PASSWORD,
    TEST_GATEWAY_TOKEN,
)
from stack.testvm import VmAccess, reboot_vm, running_vm

REPO = Path(__file__).resolve().parent.parent
CANARY_PORT = 18250  # a listener of the tests' own on the VM, which the firewall must hide


@pytest.fixture(scope="module")
def vm(is_local: bool, settings: Settings) -> VmAccess:
    if is_local:
        pytest.skip(
            "HOST controls belong to a VM deployed with pyinfra; `bin/qcstack vm-test` deploys "
            "the test VM and runs these over SSH"
        )
    return running_vm(settings)


def deploy(
    vm: VmAccess, *extra: str, env: dict[str, str] | None = None, succeeds: bool = True
) -> str:
    """`bin/qcstack deploy` of the test stack to the VM, as an operator runs it (with falco=off,
    as vm-test deploys it); its output."""
    # The test VM cannot reach Falco's repository: every deploy to it leaves Falco off.
    env = {**(env or os.environ), "QCSTACK_FALCO": "off"}
    result = subprocess.run(
        [
            str(REPO / "bin" / "qcstack"),
            "deploy",
            "--test-stack",
            "--no-build",
            *extra,
            str(vm.inventory),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    text = result.stdout + result.stderr
    assert (result.returncode == 0) == succeeds, text[-3000:]
    return text


@pytest.fixture(scope="module")
def redeploy(vm: VmAccess) -> str:
    """A second deploy with the same settings: the output of a run that should change nothing."""
    return deploy(vm)


def test_second_deploy_changes_nothing_and_says_so(redeploy: str) -> None:
    assert "no changes: all" in redeploy, redeploy[-3000:]
    assert " * " not in redeploy


def test_dry_run_of_a_changed_setting_plans_only_what_depends_on_it(vm: VmAccess) -> None:
    env = {**os.environ, "QCSTACK_EGRESS_ALLOW": '["www.quantconnect.com:443", "qc.invalid:443"]'}
    plan = deploy(vm, "--dry", env=env)
    changed = [line[4:] for line in plan.splitlines() if line.startswith("  * ")]
    assert changed, plan[-3000:]
    assert changed == [
        f"Stack settings {files.EGRESS_POLICY}",
        "Recreate the stack's containers with the new images, files or secrets "
        "(because what it depends on would change)",
    ], changed


# HOST-01 -------------------------------------------------------------------------------------


@pytest.mark.control("HOST-01", "config")
def test_sshd_takes_keys_only(docker: DockerHost, vm: VmAccess) -> None:
    effective = dict(
        line.split(" ", 1) for line in docker.check("/usr/sbin/sshd -T").lower().splitlines()
    )
    assert effective["passwordauthentication"] == "no"
    assert effective["kbdinteractiveauthentication"] == "no"
    assert effective["authenticationmethods"] == "publickey"
    assert effective["permitrootlogin"] == "without-password"
    assert effective["permitemptypasswords"] == "no"
    assert effective["allowtcpforwarding"] == "no"
    assert effective["x11forwarding"] == "no"
    assert effective["allowagentforwarding"] == "no"


@pytest.fixture
def password_user(docker: DockerHost) -> Iterator[tuple[str, str]]:
    """A user of the tests' own on the VM with a real password, so only sshd can refuse it."""
    name, password = "qcstack-canary", secrets.token_urlsafe(12)
    docker.run("userdel -r %s", name)
    docker.check("useradd -m -s /bin/sh %s", name)
    docker.check("sh -c %s", f"echo '{name}:{password}' | chpasswd")
    assert docker.check("passwd -S %s", name).split()[1] == "P", "the password was not set"
    yield name, password
    docker.run("userdel -r %s", name)


def ssh_transport(vm: VmAccess) -> paramiko.Transport:
    transport = paramiko.Transport(socket.create_connection((vm.address, 22), timeout=10))
    transport.start_client(timeout=10)
    known = vm.known_hosts.read_text().split()
    key = transport.get_remote_server_key()
    assert (key.get_name(), key.get_base64()) == (known[1], known[2]), "not the VM's host key"
    return transport


@pytest.mark.control("HOST-01", "behaviour")
def test_password_login_is_refused_and_only_keys_are_offered(
    vm: VmAccess, password_user: tuple[str, str]
) -> None:
    name, password = password_user
    transport = ssh_transport(vm)
    try:
        with pytest.raises(paramiko.BadAuthenticationType) as refused:
            transport.auth_password(name, password)
        assert refused.value.allowed_types == ["publickey"]
    finally:
        transport.close()
    # The controller's key still works: the refusal is sshd's policy, not a broken sshd.
    transport = ssh_transport(vm)
    try:
        transport.auth_publickey("root", paramiko.Ed25519Key.from_private_key_file(str(vm.key)))
        assert transport.is_authenticated()
    finally:
        transport.close()


# HOST-02 -------------------------------------------------------------------------------------


@pytest.mark.control("HOST-02", "config")
def test_firewall_drops_everything_inbound_but_ssh(docker: DockerHost, vm: VmAccess) -> None:
    ruleset = json.loads(docker.check("nft -j list table inet %s", files.FIREWALL_TABLE))
    chains = [i["chain"] for i in ruleset["nftables"] if "chain" in i]
    assert [(c["name"], c["hook"], c["policy"]) for c in chains] == [("input", "input", "drop")]
    ports = [
        expr["match"]["right"]
        for item in ruleset["nftables"]
        if "rule" in item
        for expr in item["rule"]["expr"]
        if "match" in expr and expr["match"]["left"].get("payload", {}).get("field") == "dport"
    ]
    assert ports == [files.SSH_PORT]
    assert docker.host.service(files.FIREWALL_UNIT).is_enabled


@pytest.fixture
def canary_listener(docker: DockerHost, vm: VmAccess) -> Iterator[int]:
    """A TCP listener of the tests' own on every address of the VM."""
    unit = "qcstack-test-listener"
    docker.run("systemctl stop %s", unit)
    docker.check(
        "systemd-run --unit %s /usr/bin/python3 -m http.server %s --bind 0.0.0.0",
        unit,
        str(CANARY_PORT),
    )
    # Listening, and reachable on the VM's own address from the VM itself (through lo).
    assert docker.connects(vm.address, CANARY_PORT, wait_seconds=10), "listener did not start"
    yield CANARY_PORT
    docker.run("systemctl stop %s", unit)


@pytest.mark.control("HOST-02", "behaviour")
def test_a_listener_other_than_ssh_is_unreachable_from_the_network(
    vm: VmAccess, canary_listener: int
) -> None:
    with pytest.raises(TimeoutError):  # dropped, not refused: nothing answers at all
        socket.create_connection((vm.address, canary_listener), timeout=3)
    socket.create_connection((vm.address, files.SSH_PORT), timeout=3).close()


# HOST-03 -------------------------------------------------------------------------------------


@pytest.mark.control("HOST-03", "config")
def test_unattended_security_upgrades_are_configured(docker: DockerHost, vm: VmAccess) -> None:
    assert docker.host.package("unattended-upgrades").is_installed
    config = docker.check("apt-config dump")
    assert 'APT::Periodic::Update-Package-Lists "1";' in config
    assert 'APT::Periodic::Unattended-Upgrade "1";' in config
    for timer in ("apt-daily.timer", "apt-daily-upgrade.timer"):
        assert docker.host.service(timer).is_enabled, timer


@pytest.mark.control("HOST-03", "behaviour")
def test_unattended_upgrade_takes_security_updates(docker: DockerHost, vm: VmAccess) -> None:
    run = docker.run("unattended-upgrade --dry-run --debug")
    assert run.rc == 0, run.stderr[-2000:]
    log = run.stdout + run.stderr
    allowed = next(line for line in log.splitlines() if line.startswith("Allowed origins are:"))
    assert "codename=bookworm-security,label=Debian-Security" in allowed
    for timer in ("apt-daily.timer", "apt-daily-upgrade.timer"):
        assert docker.host.service(timer).is_running, timer


# HOST-04 -------------------------------------------------------------------------------------


@pytest.mark.control("HOST-04", "config")
def test_docker_daemon_is_hardened(docker: DockerHost, vm: VmAccess, project: str) -> None:
    assert json.loads(docker.check("cat %s", files.DAEMON_JSON)) == files.DAEMON_CONFIG
    info = json.loads(docker.check("docker info --format '{{json .}}'"))
    assert info["LiveRestoreEnabled"] is True
    # Docker 20.10's info does not list the no-new-privileges default; the behaviour test
    # shows it on a container.
    assert info["LoggingDriver"] == "json-file"
    bridge = docker.inspect("network", "bridge")
    assert bridge["Options"]["com.docker.network.bridge.enable_icc"] == "false"
    # The gateway's port is published, yet no docker-proxy process carries it.
    assert docker.run("pgrep -x docker-proxy").rc == 1
    # A container that sets no logging options of its own gets the daemon's limits.
    double = stack_container(docker, project, "qc-api-double")
    assert double.host_config["LogConfig"]["Config"] == {"max-file": "3", "max-size": "10m"}


@pytest.mark.control("HOST-04", "behaviour")
def test_containers_gain_no_privileges_and_survive_a_daemon_restart(
    docker: DockerHost, settings: Settings, vm: VmAccess, project: str
) -> None:
    status = docker.check(
        "docker run --rm --network none --entrypoint /usr/bin/python3 %s -c %s",
        settings.image("qc-mcp"),
        "print(open('/proc/self/status').read())",
    )
    assert "NoNewPrivs:\t1" in status  # asked for nothing, got no-new-privileges anyway
    before: Container = stack_container(docker, project, "gateway")
    docker.check("systemctl restart docker.service")
    after = docker.inspect("container", before.id)
    assert after["State"]["Running"] is True
    assert after["State"]["Pid"] == before.attrs["State"]["Pid"]  # the same process, never stopped
    assert docker.host.service(files.STACK_UNIT).is_running


# HOST-05 -------------------------------------------------------------------------------------


def controller_image_id(tag: str) -> str:
    return subprocess.run(
        ["docker", "image", "inspect", "-f", "{{.Id}}", tag],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


SERVICES = tuple(recipe.name for recipe in IMAGES)
"""Every image the stack runs: each is shipped to the VM and checked by ID."""


@pytest.mark.control("HOST-05", "config")
def test_vm_runs_exactly_the_controllers_images(
    docker: DockerHost, settings: Settings, vm: VmAccess, project: str
) -> None:
    for service in SERVICES:
        tag = settings.image(service)
        running = stack_container(docker, project, service).attrs["Image"]
        assert running == controller_image_id(tag), service
    unit = docker.check("systemctl cat %s", files.STACK_UNIT)
    assert unit.count("--pull never") == 2  # start and reload


@pytest.mark.control("HOST-05", "behaviour")
def test_an_image_swapped_on_the_vm_is_caught(
    docker: DockerHost, settings: Settings, vm: VmAccess
) -> None:
    proxy, relay = settings.image("egress-proxy"), settings.image("gateway-relay")
    good = controller_image_id(proxy)
    check = files.verify_images([(proxy, good)])
    assert docker.run("sh -c %s", check).rc == 0
    docker.check("docker tag %s %s", relay, proxy)  # someone swaps the image behind the tag
    try:
        refused = docker.run("sh -c %s", check)
        assert refused.rc == 1 and f"{proxy} is not {good}" in refused.stderr
        # Fail closed: the swapped tag is gone, so nothing starts under that name.
        assert docker.run("docker image inspect %s", proxy).rc != 0
        plan = deploy(vm, "--dry")
        assert f"  * HOST-05 Upload 1 of {len(IMAGES)} images" in plan, plan[-3000:]
    finally:
        docker.check("docker tag %s %s", good, proxy)


# HOST-06 -------------------------------------------------------------------------------------


def deployed_secrets() -> tuple[str, ...]:
    return (*STACK_SECRETS, *TEST_SECRET_NAMES)


@pytest.mark.control("HOST-06", "config")
def test_secrets_are_root_only_and_0400_for_their_service(docker: DockerHost, vm: VmAccess) -> None:
    folder = docker.host.file(files.SECRETS_DIR)
    assert (folder.uid, folder.gid, folder.mode) == (0, 0, 0o700)
    listed = set(docker.check("ls -A %s", files.SECRETS_DIR).split())
    assert listed == set(deployed_secrets())  # no upload left behind
    for name in deployed_secrets():
        secret = docker.host.file(f"{files.SECRETS_DIR}/{name}")
        assert (secret.uid, secret.gid, secret.mode) == (owner(name), owner(name), 0o400), name


@pytest.mark.control("HOST-06", "behaviour")
def test_secrets_are_unreadable_to_other_users_of_the_vm(docker: DockerHost, vm: VmAccess) -> None:
    def read_as(uid: int, name: str) -> int:
        return int(
            docker.run(
                "setpriv --reuid %s --regid %s --clear-groups --no-new-privs python3 -c %s %s",
                str(uid),
                str(uid),
                "import sys; open(sys.argv[1]).read()",
                f"{files.SECRETS_DIR}/{name}",
            ).rc
        )

    assert docker.run("cat %s/qc_api_token", files.SECRETS_DIR).rc == 0  # root can: it exists
    assert read_as(65534, "qc_api_token") != 0
    assert read_as(65534, "gateway_brokerages") != 0
    # Even a file's owner is stopped by the root-only folder on the VM itself: the gateway's
    # uid reads its token only through its container's bind mount.
    assert read_as(10004, "gateway_token") != 0


@pytest.mark.control("HOST-06", "behaviour")
def test_deploy_never_prints_a_secret(vm: VmAccess, redeploy: str) -> None:
    output = redeploy + deploy(vm, "--dry")
    assert "HOST-06 Secret qc_api_token" in output  # the secrets' operations ran and printed
    for value in (
        CANARY_API_TOKEN,
        TEST_GATEWAY_TOKEN,
        TEST_ADMIN_PASSWORD,
        CANARY_BROKERAGE_PASSWORD,
    ):
        assert value not in output


# HOST-07 -------------------------------------------------------------------------------------

FALCO_NOT_INSTALLED = (
    "Falco is not installed on the host under test: no Falco package or repository can be reached "
    "from these machines, so the test VM is deployed with falco=off; here HOST-07 is checked by "
    "the deploy's dry-run plan (tests/test_deploy_falco.py) and the schema and lint checks of "
    "falco/falco.yaml and falco/qcstack_rules.yaml only"
)


@pytest.fixture(scope="module")
def falco_host(docker: DockerHost) -> DockerHost:
    """The host under test, when Falco is installed on it."""
    status = docker.run("dpkg-query -W -f='${Status}' falco").stdout.strip()
    if status != "install ok installed":
        # The deploy's rules without the package: Falco was removed from a host it was put on.
        assert docker.run("test -e %s", falco.RULES).rc != 0, f"{falco.RULES} without Falco"
        pytest.skip(FALCO_NOT_INSTALLED)
    return docker


def deployed_falco_plan(docker: DockerHost) -> falco.FalcoPlan:
    """What the deploy renders for this host: its responder port is in the deployed compose.env."""
    env = dict(
        line.split("=", 1) for line in docker.check("cat %s", files.COMPOSE_ENV).splitlines()
    )
    port = int(env["QCSTACK_RESPONDER_PORT"])
    return falco.make_falco_plan("repository", REPO, port, None, "")


@pytest.mark.control("HOST-07", "config")
def test_falco_runs_the_pinned_release_with_the_deployed_config_and_rules(
    falco_host: DockerHost, settings: Settings
) -> None:
    if settings.falco == "package":
        record = falco_host.check("cat %s", falco.INSTALLED_PACKAGE).strip()
        assert record == settings.falco_package_sha256
    else:
        version = falco_host.check("dpkg-query -W -f='${Version}' falco").strip()
        assert version == falco.VERSION
    plan = deployed_falco_plan(falco_host)
    assert falco_host.check("cat %s", falco.CONFIG) == plan.config
    assert falco_host.check("cat %s", falco.RULES) == plan.rules
    assert falco_host.run("test -s %s", falco.STABLE_RULES).rc == 0  # the package's stable rules
    falco_host.check("falco -c %s --dry-run", falco.CONFIG)  # both load, without an error
    service = falco_host.host.service(falco.SERVICE)
    assert service.is_enabled and service.is_running
    masked = falco_host.run("systemctl is-enabled %s", falco.FALCOCTL_SERVICE).stdout.strip()
    assert masked == "masked"


def responder_alerts(docker: DockerHost, project: str, rule: str) -> int:
    """How many alerts of `rule` the responder's audit log holds, read inside its container."""
    entries = responder_audit(docker, stack_container(docker, project, "falco-responder"))
    return sum(1 for e in entries if e.get("event") == "falco-alert" and e.get("rule") == rule)


SENSITIVE_READ_RULE = "Read sensitive file untrusted"
"""A stable rule (WARNING, not tagged qcstack: recorded, no lockdown) the test can trigger on the
host itself: an untrusted program reading /etc/shadow."""


@pytest.mark.control("HOST-07", "behaviour")
def test_a_sensitive_read_on_the_host_reaches_the_responder(
    falco_host: DockerHost, project: str
) -> None:
    before = responder_alerts(falco_host, project, SENSITIVE_READ_RULE)
    falco_host.check("python3 -c %s", "open('/etc/shadow').read()")
    for _ in range(20):  # http_output posts within a second or two; 10 s at most
        if responder_alerts(falco_host, project, SENSITIVE_READ_RULE) > before:
            break
        time.sleep(0.5)
    assert responder_alerts(falco_host, project, SENSITIVE_READ_RULE) > before, (
        "Falco's alert never reached the responder: "
        + falco_host.run("journalctl -u %s -n 30 --no-pager", falco.SERVICE).stdout
    )


# Upgrades ------------------------------------------------------------------------------------


@pytest.fixture
def disruptive(request: pytest.FixtureRequest, vm: VmAccess) -> None:
    """Tests that recreate the stack's containers or reboot the VM run only when asked, last:
    the other suites keep the containers they inspected for the whole session."""
    if not request.config.getoption("--disruptive"):
        pytest.skip(
            "recreates the stack or reboots the VM under the other suites: `bin/qcstack "
            "vm-test` runs it last, with --disruptive"
        )


def new_relay_release(settings: Settings, change: str) -> tuple[str, str, str]:
    """Moves the controller's gateway-relay tag to a new image: the current one plus `change`
    (Dockerfile lines), built from local inputs only. Returns (tag, current ID, new ID)."""
    tag = settings.image("gateway-relay")
    current = controller_image_id(tag)
    subprocess.run(
        ["docker", "build", "-q", "-t", tag, "-"],
        input=f"FROM {current}\n{change}\n",
        text=True,
        check=True,
        capture_output=True,
        env={"PATH": os.environ["PATH"], "DOCKER_BUILDKIT": "0"},
    )
    new = controller_image_id(tag)
    assert new != current
    return tag, current, new


def put_back(tag: str, current: str, new: str) -> None:
    subprocess.run(["docker", "tag", current, tag], check=True)
    subprocess.run(["docker", "rmi", new], check=False, capture_output=True)


@pytest.fixture
def upgraded_relay(
    settings: Settings, vm: VmAccess, disruptive: None
) -> Iterator[tuple[str, str, str]]:
    """A new relay release that works (one more label); afterwards the controller's tag and the
    VM are put back on the current release."""
    release = new_relay_release(settings, "LABEL qcstack.test=upgraded-relay")
    try:
        yield release
    finally:
        put_back(*release)
        deploy(vm)


@pytest.fixture
def broken_relay(settings: Settings, disruptive: None) -> Iterator[tuple[str, str]]:
    """The controller's gateway-relay tag moved to an image that cannot start (its entry point
    is missing), as a bad release would be; put back afterwards. Yields (tag, good image ID)."""
    release = new_relay_release(
        settings, 'LABEL qcstack.test=broken-relay\nENTRYPOINT ["/nonexistent"]'
    )
    try:
        yield release[0], release[1]
    finally:
        put_back(*release)


def test_an_upgrade_replaces_the_containers_and_keeps_their_state(
    docker: DockerHost, vm: VmAccess, project: str, upgraded_relay: tuple[str, str, str]
) -> None:
    tag, current, new = upgraded_relay
    gateway = stack_container(docker, project, "gateway")
    assert stack_container(docker, project, "gateway-relay").attrs["Image"] == current
    audit = gateway_audit(docker, gateway)
    output = deploy(vm)
    assert f"HOST-05 Upload 1 of {len(IMAGES)} images" in output  # only the new release travels
    assert docker.check("docker image inspect -f '{{.Id}}' %s", tag).strip() == new
    relay = stack_container(docker, project, "gateway-relay")
    assert relay.attrs["Image"] == new
    assert relay.attrs["State"]["Health"]["Status"] == "healthy"
    after = stack_container(docker, project, "gateway")
    assert after.id != gateway.id  # recreated, not left running on the old settings
    assert gateway_audit(docker, after)[: len(audit)] == audit  # the volume kept its state


def test_an_upgrade_that_never_becomes_healthy_rolls_back(
    docker: DockerHost, vm: VmAccess, project: str, broken_relay: tuple[str, str]
) -> None:
    tag, good = broken_relay
    gateway = stack_container(docker, project, "gateway")
    audit = gateway_audit(docker, gateway)
    output = deploy(vm, succeeds=False)
    assert f"HOST-05 Upload 1 of {len(IMAGES)} images" in output  # only the changed image travels
    assert "rolling back" in output and "rolled back" in output, output[-3000:]
    relay = stack_container(docker, project, "gateway-relay")
    assert relay.attrs["Image"] == good
    assert docker.check("docker image inspect -f '{{.Id}}' %s", tag).strip() == good
    assert relay.attrs["State"]["Health"]["Status"] == "healthy"
    after = stack_container(docker, project, "gateway")
    assert gateway_audit(docker, after)[: len(audit)] == audit  # the volume kept its state


# Boot ----------------------------------------------------------------------------------------

STACK_SERVICES = (*SERVICES, "qc-api-double")


def test_stack_starts_at_boot_with_its_state_and_firewall(
    disruptive: None, docker: DockerHost, settings: Settings, vm: VmAccess, project: str
) -> None:
    gateway = stack_container(docker, project, "gateway")
    # A call through the gateway, so its audit log has an entry of this test's to keep.
    gateway_calls(docker, settings, settings.image("qc-mcp"), [("read_account", {})])
    audit = gateway_audit(docker, gateway)
    assert audit, "the call left no audit entry"
    reboot_vm(vm)
    assert docker.host.service(files.STACK_UNIT).is_running
    for service in STACK_SERVICES:
        container = stack_container(docker, project, service)
        health = container.attrs["State"].get("Health", {}).get("Status")
        assert health == "healthy", f"{service} is {health} after boot"
    after = stack_container(docker, project, "gateway")
    assert after.id != gateway.id  # a new container: the shutdown really stopped the stack
    assert gateway_audit(docker, after)[: len(audit)] == audit  # GW-07's volume survived
    assert docker.run("nft list table inet %s", files.FIREWALL_TABLE).rc == 0
