"""Makes the test VM's image (systemd, sshd, Docker) from Debian packages, cached by its inputs.

A real VM is not practical on these machines (DESIGN.md), so the pyinfra deploy is tested
against a container that boots systemd and runs sshd and its own dockerd. Like the stack's base
image, its root filesystem is made with debootstrap and imported, never pulled.
"""

from __future__ import annotations

import hashlib
import os
import shutil

from stack.build.base import debootstrap, image_exists, import_rootfs
from stack.process import CommandError
from stack.settings import Settings

VARIANT = "minbase"
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "docker.io",
    "iproute2",
    "python3",
    "ca-certificates",
)
"""A fresh Debian 12 server as a cloud image has it: what the deploy expects to find. docker.io
is the Engine from Debian 12, as the deploy installs it (preinstalled here so a test deploy
downloads little); the deploy adds the Compose plugin, nftables and unattended-upgrades."""

FIRST_BOOT_KEYS = """\
[Unit]
Description=Make this VM's own SSH host keys (the image ships none)
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
"""
"""Host keys made at first boot, so no two VMs from the image share them."""

NET_SYSCTLS = """\
[Unit]
Description=Make this VM's network sysctls writable, as a VM's are
DefaultDependencies=no
Before=systemd-sysctl.service docker.service
After=systemd-remount-fs.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/mount --bind /proc/sys/net /proc/sys/net
ExecStart=/bin/mount -o remount,bind,rw /proc/sys/net

[Install]
WantedBy=sysinit.target
"""
"""Docker mounts /proc/sys read-only in a container, but dockerd writes network sysctls (with
userland-proxy off it sets route_localnet for its bridges). /proc/sys/net belongs to the VM's
own network namespace, so writing there touches no setting of the machine that runs the VM;
the rest of /proc/sys (the shared kernel's) stays read-only."""

FILES = {
    "etc/systemd/system/qcstack-vm-net-sysctls.service": NET_SYSCTLS,
    "etc/systemd/system/sysinit.target.wants/qcstack-vm-net-sysctls.service": (
        "->/etc/systemd/system/qcstack-vm-net-sysctls.service"
    ),
    "etc/systemd/system/qcstack-vm-host-keys.service": FIRST_BOOT_KEYS,
    # A container has no console to log in on, and no hardware clock to sync.
    "etc/systemd/system/multi-user.target.wants/qcstack-vm-host-keys.service": (
        "->/etc/systemd/system/qcstack-vm-host-keys.service"
    ),
    "etc/hostname": "qcstack-vm\n",
}


def vm_image_tag(settings: Settings) -> str:
    recipe = "\n".join(
        [
            settings.debian_suite,
            settings.debian_mirror,
            VARIANT,
            *PACKAGES,
            *(f"{path}\n{text}" for path, text in sorted(FILES.items())),
        ]
    )
    digest = hashlib.sha256(recipe.encode()).hexdigest()[:12]
    return f"qcstack/testvm:{settings.debian_suite}-{digest}"


def ensure_vm_image(settings: Settings) -> str:
    """Returns the test VM's image, making it with debootstrap when it is missing."""
    tag = vm_image_tag(settings)
    if image_exists(tag):
        return tag
    if os.geteuid() != 0:
        raise CommandError("building the test VM's rootfs needs root (debootstrap)")
    rootfs = debootstrap(settings, f"testvm-{tag.split(':')[1]}", VARIANT, PACKAGES)
    # The image ships no host keys (each VM makes its own) and no machine id (systemd makes one).
    for key in (rootfs / "etc" / "ssh").glob("ssh_host_*"):
        key.unlink()
    (rootfs / "etc" / "machine-id").write_text("")
    for relative, text in FILES.items():
        path = rootfs / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        if text.startswith("->"):
            path.symlink_to(text[2:])
        else:
            path.write_text(text)
    # Units that cannot work in a container and would only leave the system "degraded".
    for unit in ("getty@tty1.service", "systemd-timesyncd.service"):
        for link in (rootfs / "etc" / "systemd" / "system").rglob(unit):
            link.unlink()
    import_rootfs(rootfs, tag, changes=('CMD ["/sbin/init"]',))
    shutil.rmtree(rootfs)
    return tag
