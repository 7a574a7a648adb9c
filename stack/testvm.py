"""Starts and stops the test "VM": a systemd container with sshd and its own dockerd (DESIGN.md).

It runs on a network of its own, without --privileged (these machines cannot grant it), and
takes logins only with an SSH key pair made for each start; the controller checks the VM's own
host key, which the VM makes at first boot.
"""

from __future__ import annotations

import shlex
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from stack.build.vm import ensure_vm_image
from stack.process import CommandError, output, run, step
from stack.settings import Settings

VM_LABEL = "qcstack.test=vm"
RUN_FLAGS = (
    # Everything a VM's root has, but CAP_SYS_RESOURCE, which this machine's bounding set lacks
    # (so --privileged fails here).
    "--cap-add",
    "ALL",
    "--cap-drop",
    "SYS_RESOURCE",
    "--security-opt",
    "seccomp=unconfined",
    "--security-opt",
    "apparmor=unconfined",
    "--device-cgroup-rule",
    "a *:* rwm",
    "-v",
    "/sys/fs/cgroup:/sys/fs/cgroup:ro",
    "--tmpfs",
    "/run",
    "--tmpfs",
    "/run/lock",
    # systemd takes SIGTERM as "re-execute"; this is its signal to shut down cleanly, which
    # stops the stack's unit before dockerd, as a VM's shutdown would.
    "--stop-signal",
    "SIGRTMIN+3",
    "--stop-timeout",
    "90",
)


@dataclass(frozen=True)
class VmAccess:
    """A running test VM and how to reach it over SSH."""

    name: str
    address: str
    directory: Path
    """Holds the per-start key pair, the VM's host key, an ssh_config and a pyinfra inventory."""

    @property
    def key(self) -> Path:
        return self.directory / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.directory / "known_hosts"

    @property
    def ssh_config(self) -> Path:
        return self.directory / "ssh_config"

    @property
    def inventory(self) -> Path:
        return self.directory / "inventory.py"

    @property
    def testinfra_host(self) -> str:
        """The infra suites' --hosts value, with --ssh-config=<ssh_config>."""
        return f"ssh://{self.name}"

    def ssh(self, command: str, *, check: bool = True, timeout: float = 60) -> str:
        """Runs a shell command on the VM as root over SSH; returns its output."""
        result = run(
            ["ssh", "-F", self.ssh_config, self.name, command],
            capture=True,
            check=check,
            timeout=timeout,
        )
        return result.stdout


def vm_directory(settings: Settings) -> Path:
    return settings.build_dir / "vm" / settings.test_vm_name


def docker_volume(settings: Settings) -> str:
    return f"{settings.test_vm_name}-docker"


def remove_vm(settings: Settings) -> None:
    """Removes the VM's container, network and Docker volume; leftovers of any start included."""
    name = settings.test_vm_name
    run(["docker", "rm", "-f", name], capture=True, check=False)
    run(["docker", "network", "rm", name], capture=True, check=False)
    run(["docker", "volume", "rm", docker_volume(settings)], capture=True, check=False)
    shutil.rmtree(vm_directory(settings), ignore_errors=True)


def _wait_for_boot(name: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        result = run(
            ["docker", "exec", name, "systemctl", "is-system-running"], capture=True, check=False
        )
        state = result.stdout.strip()
        if state in ("running", "degraded"):
            break
        time.sleep(1)
    else:
        raise CommandError(f"the test VM {name} did not boot in {timeout:.0f}s (state {state!r})")
    if state == "degraded":
        failed = output(["docker", "exec", name, "systemctl", "--failed", "--no-legend"])
        raise CommandError(f"the test VM {name} booted degraded; failed units:\n{failed}")
    for unit in ("ssh.service", "docker.service"):
        active = run(
            ["docker", "exec", name, "systemctl", "is-active", unit], capture=True, check=False
        ).stdout.strip()
        if active != "active":
            raise CommandError(f"{unit} is {active!r} on the test VM {name}")


def write_access_files(vm: VmAccess, host_key: str) -> None:
    """known_hosts with the VM's own key, an ssh_config and a pyinfra inventory for it."""
    vm.known_hosts.write_text(f"{vm.address} {host_key}\n")
    vm.ssh_config.write_text(
        f"Host {vm.name}\n"
        f"  HostName {vm.address}\n"
        "  User root\n"
        f"  IdentityFile {vm.key}\n"
        "  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {vm.known_hosts}\n"
        "  StrictHostKeyChecking yes\n"
        "  PasswordAuthentication no\n"
        "  BatchMode yes\n"
        "  ConnectTimeout 10\n"
    )
    data = {
        "ssh_user": "root",
        "ssh_key": str(vm.key),
        "ssh_known_hosts_file": str(vm.known_hosts),
        "ssh_strict_host_key_checking": "yes",
        "ssh_allow_agent": False,
        "ssh_look_for_keys": False,
    }
    vm.inventory.write_text(
        '"""pyinfra inventory of the test VM (written by stack/testvm.py)."""\n\n'
        f"hosts = [({vm.address!r}, {data!r})]\n"
    )


def reboot_vm(vm: VmAccess, *, boot_timeout: float = 180) -> None:
    """Shuts the VM down cleanly (systemd stops every unit) and boots it again."""
    run(["docker", "restart", vm.name], capture=True, timeout=boot_timeout)
    _wait_for_boot(vm.name, boot_timeout)
    vm.ssh("true")


def start_vm(settings: Settings, *, boot_timeout: float = 120) -> VmAccess:
    """Starts a fresh test VM (any leftover is removed first) and returns how to reach it."""
    image = ensure_vm_image(settings)
    name = settings.test_vm_name
    subnet = settings.test_vm_subnet
    remove_vm(settings)
    directory = vm_directory(settings)
    directory.mkdir(parents=True, mode=0o700)
    address = str(subnet.network_address + 10)
    with step(f"start the test VM {name} ({image}) at {address}"):
        run(
            [
                "docker",
                "network",
                "create",
                "--label",
                VM_LABEL,
                "--subnet",
                str(subnet),
                name,
            ],
            capture=True,
        )
        run(
            [
                "docker",
                "run",
                "-d",
                "--name",
                name,
                "--hostname",
                name,
                "--label",
                VM_LABEL,
                "--network",
                name,
                "--ip",
                address,
                *RUN_FLAGS,
                "-v",
                f"{docker_volume(settings)}:/var/lib/docker",
                image,
            ],
            capture=True,
        )
        _wait_for_boot(name, boot_timeout)
    vm = VmAccess(name, address, directory)
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{name}-controller", "-f", vm.key])
    public = vm.key.with_suffix(".pub").read_text().strip()
    install = (
        "install -d -m 0700 /root/.ssh && "
        f"printf '%s\\n' {shlex.quote(public)} > /root/.ssh/authorized_keys && "
        "chmod 0600 /root/.ssh/authorized_keys"
    )
    run(["docker", "exec", name, "sh", "-c", install])
    host_key = output(["docker", "exec", name, "cat", "/etc/ssh/ssh_host_ed25519_key.pub"])
    write_access_files(vm, " ".join(host_key.split()[:2]))
    vm.ssh("true")  # the key, the host key and sshd all work, or this fails here
    return vm


def running_vm(settings: Settings) -> VmAccess:
    """The test VM `qcstack vm up` started, as its access files describe it."""
    directory = vm_directory(settings)
    config = directory / "ssh_config"
    if not config.exists():
        raise CommandError("no test VM is running: start one with `bin/qcstack vm up`")
    address = config.read_text().split("HostName ", 1)[1].split()[0]
    return VmAccess(settings.test_vm_name, address, directory)
