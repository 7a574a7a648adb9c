"""The pyinfra operations that turn a Debian 12 VM into a running, hardened qcstack.

Every operation is named (so pyinfra never prints its arguments) and states the control it
enforces. Facts decide what changes, so a second run with the same plan changes nothing.
"""

from __future__ import annotations

import hashlib
import io
import shlex
from collections.abc import Generator
from pathlib import Path

from pyinfra.api.command import FileUploadCommand, StringCommand
from pyinfra.api.operation import OperationMeta, operation
from pyinfra.context import host
from pyinfra.facts.server import Command
from pyinfra.facts.systemd import SystemdEnabled, SystemdStatus
from pyinfra.operations import apt, files, server, systemd

from stack.deploy import falco
from stack.deploy import files as paths
from stack.deploy.plan import DeployPlan, Secret, save_images

PACKAGES = ("docker.io", "nftables", "unattended-upgrades")


class WhenChanged:
    """An operation's `_if`: true when any of the operations it depends on changed something.
    Unlike pyinfra's any_changed it names them, so a dry run can tell whether it would run."""

    def __init__(self, *depends_on: OperationMeta) -> None:
        self.depends_on = depends_on

    def __call__(self) -> bool:
        return any(meta.did_change() for meta in self.depends_on)


def _fact(command: str) -> str:
    """A command's output on the VM, read when the plan is made (before anything changes)."""
    value = host.get_fact(Command, command=command)
    return str(value or "").strip()


@operation()
def secret_file(src: str, dest: str, uid: int) -> Generator[StringCommand | FileUploadCommand]:
    """Writes one secret 0400 for `uid` (HOST-06). Unlike files.put it never reads the remote
    file's contents and never prints a diff, whatever pyinfra's settings; the upload lands in
    the root-only secrets folder first, so no other user can read it in between."""
    local = hashlib.sha256(Path(src).read_bytes()).hexdigest()
    current = _fact(
        f"stat -c '%u %g %a' {shlex.quote(dest)} 2>/dev/null && "
        f"sha256sum {shlex.quote(dest)} | cut -d' ' -f1 || true"
    ).split()
    if current == [str(uid), str(uid), "400", local]:
        host.noop(f"{dest} is current")
        return
    temp = f"{paths.SECRETS_DIR}/.upload-{Path(dest).name}"
    yield StringCommand(f"rm -f {shlex.quote(temp)}")
    yield FileUploadCommand(src, temp, remote_temp_filename=temp)
    yield StringCommand(
        f"chown {uid}:{uid} {shlex.quote(temp)} && chmod 0400 {shlex.quote(temp)} && "
        f"mv -f {shlex.quote(temp)} {shlex.quote(dest)}"
    )


NEVER = WhenChanged()
"""An `_if` for an operation that the facts show is not needed: it stays in the plan's listing,
unchanged, so the listing is the same on every run."""


def _unless(current: bool) -> WhenChanged | None:
    return NEVER if current else None


@operation()
def nothing_to_do(reason: str) -> Generator[StringCommand]:
    """An operation that changes nothing and says why, in the plan's listing."""
    host.noop(reason)
    yield from ()


def _put_text(name: str, dest: str, text: str, mode: int) -> OperationMeta:
    return files.put(
        name=name,
        src=io.StringIO(text),
        dest=dest,
        user="root",
        group="root",
        mode=f"{mode:o}",
    )


def docker_engine(plan: DeployPlan) -> None:
    """Docker Engine from Debian 12, the pinned Compose plugin, and the daemon's hardening."""
    apt.packages(
        name="Install Docker Engine, nftables and unattended-upgrades (Debian 12)",
        packages=list(PACKAGES),
        update=True,
        cache_time=24 * 3600,
        no_recommends=True,
    )
    version = _fact(f"{paths.COMPOSE_PLUGIN} version --short 2>/dev/null || true")
    if version != paths.COMPOSE_DEB_VERSION:
        server.shell(
            name=f"Install the Compose plugin {paths.COMPOSE_DEB_VERSION} (pinned by sha256)",
            commands=[f"sh -c {shlex.quote(paths.install_compose_plugin(plan.mirror))}"],
        )
    daemon = _put_text(
        "HOST-04 Docker daemon hardening (daemon.json)",
        paths.DAEMON_JSON,
        plan.rendered[paths.DAEMON_JSON][0],
        0o644,
    )
    systemd.service(
        name="HOST-04 Restart Docker Engine when daemon.json changed",
        service="docker.service",
        running=True,
        enabled=True,
        restarted=True,
        _if=WhenChanged(daemon),
    )
    systemd.service(
        name="Docker Engine runs and starts at boot",
        service="docker.service",
        running=True,
        enabled=True,
    )


def ssh_hardening(plan: DeployPlan) -> None:
    drop_in = _put_text(
        "HOST-01 SSH by key only (sshd_config.d)",
        paths.SSHD_DROP_IN,
        plan.rendered[paths.SSHD_DROP_IN][0],
        0o644,
    )
    server.shell(
        name="HOST-01 Check sshd's configuration before reloading it",
        commands=["/usr/sbin/sshd -t"],
        _if=WhenChanged(drop_in),
    )
    systemd.service(
        name="HOST-01 Reload sshd",
        service="ssh.service",
        running=True,
        enabled=True,
        reloaded=True,
        _if=WhenChanged(drop_in),
    )


def firewall(plan: DeployPlan) -> None:
    unit_path = f"/etc/systemd/system/{paths.FIREWALL_UNIT}"
    rules = _put_text(
        "HOST-02 Firewall rules: inbound SSH only",
        paths.FIREWALL_RULES,
        plan.rendered[paths.FIREWALL_RULES][0],
        0o644,
    )
    unit = _put_text("HOST-02 Firewall unit", unit_path, plan.rendered[unit_path][0], 0o644)
    server.shell(
        name="HOST-02 Check the firewall rules",
        commands=[f"/usr/sbin/nft -c -f {paths.FIREWALL_RULES}"],
        _if=WhenChanged(rules),
    )
    systemd.daemon_reload(name="HOST-02 Reload systemd units", _if=WhenChanged(unit))
    systemd.service(
        name="HOST-02 Firewall loaded and loaded at boot",
        service=paths.FIREWALL_UNIT,
        running=True,
        enabled=True,
    )
    # The live ruleset, not only the file: a table someone deleted is loaded again.
    loaded = _fact(
        f"nft list table inet {paths.FIREWALL_TABLE} >/dev/null 2>&1 && echo loaded || true"
    )
    systemd.service(
        name="HOST-02 Reload the firewall rules",
        service=paths.FIREWALL_UNIT,
        reloaded=True,
        _if=None if loaded != "loaded" else WhenChanged(rules),
    )


def security_updates(plan: DeployPlan) -> None:
    for path in (paths.AUTO_UPGRADES, paths.UNATTENDED_UPGRADES):
        _put_text(
            f"HOST-03 Unattended security updates ({path})", path, plan.rendered[path][0], 0o644
        )
    for timer in ("apt-daily.timer", "apt-daily-upgrade.timer"):
        systemd.service(name=f"HOST-03 {timer} runs", service=timer, running=True, enabled=True)


def ship_images(plan: DeployPlan) -> tuple[list[OperationMeta], list[tuple[str, str]]]:
    """HOST-05: the controller's images, loaded by `docker load` and checked by ID; the VM
    builds nothing and pulls nothing. Shipped only when an ID on the VM differs."""
    present = {}
    for image in plan.images:
        present[image.tag] = _fact(
            f"docker image inspect -f '{{{{.Id}}}}' {shlex.quote(image.tag)} 2>/dev/null || true"
        )
    if all(present[image.tag] == image.id for image in plan.images):
        return [], []
    # What the VM runs now, to roll back to if the new images do not become healthy.
    previous = [(tag, image_id) for tag, image_id in present.items() if image_id]
    if len(previous) != len(plan.images):
        previous = []
    needed = tuple(image for image in plan.images if present[image.tag] != image.id)
    archive = save_images(plan.archive_dir, needed)
    remote = f"{paths.IMAGES_DIR}/{archive.name}"
    upload = files.put(
        name=f"HOST-05 Upload {len(needed)} of {len(plan.images)} images "
        f"({archive.stat().st_size // 2**20} MiB, docker save)",
        src=str(archive),
        dest=remote,
        user="root",
        group="root",
        mode="600",
    )
    load = server.shell(
        name="HOST-05 Load the images and check every ID against the controller's",
        commands=[
            f"docker load -q -i {shlex.quote(remote)}",
            f"rm -f {shlex.quote(remote)}",
            "sh -c "
            + shlex.quote(paths.verify_images([(image.tag, image.id) for image in plan.images])),
        ],
    )
    return [upload, load], previous


def stack_files(plan: DeployPlan) -> list[OperationMeta]:
    changed = []
    files.directory(
        name="HOST-06 Secrets folder, root's alone",
        path=paths.SECRETS_DIR,
        user="root",
        group="root",
        mode="700",
    )
    for remote, local in sorted(plan.copied.items()):
        changed.append(
            files.put(
                name=f"Stack file {remote}",
                src=str(local),
                dest=remote,
                user="root",
                group="root",
                mode="644",
            )
        )
    for remote in (paths.COMPOSE_ENV, paths.EGRESS_POLICY, paths.GATEWAY_ENV, paths.RESPONDER_ENV):
        text, mode = plan.rendered[remote]
        changed.append(_put_text(f"Stack settings {remote}", remote, text, mode))
    for secret in plan.secrets:
        changed.append(_secret(secret))
    return changed


def _secret(secret: Secret) -> OperationMeta:
    return secret_file(
        name=f"HOST-06 Secret {secret.name} (0400, uid {secret.uid})",
        src=str(secret.source),
        dest=secret.dest,
        uid=secret.uid,
    )


def stack_service(
    plan: DeployPlan,
    changes: list[OperationMeta],
    images: list[OperationMeta],
    previous: list[tuple[str, str]],
) -> None:
    unit_path = f"/etc/systemd/system/{paths.STACK_UNIT}"
    was_running = bool(host.get_fact(SystemdStatus).get(paths.STACK_UNIT))
    was_enabled = bool(host.get_fact(SystemdEnabled).get(paths.STACK_UNIT))
    unit = _put_text(
        "Stack unit: qcstack starts at boot", unit_path, plan.rendered[unit_path][0], 0o644
    )
    systemd.daemon_reload(name="Reload systemd units (stack)", _if=WhenChanged(unit))
    if was_running and was_enabled and images and previous:
        server.shell(
            name="Recreate the stack's containers with the new images, rolling back to the "
            "previous ones unless every service becomes healthy",
            commands=[f"sh -c {shlex.quote(paths.upgrade_with_rollback(previous))}"],
        )
    elif was_running and was_enabled:
        systemd.service(
            name="Recreate the stack's containers with the new images, files or secrets",
            service=paths.STACK_UNIT,
            reloaded=True,
            _if=WhenChanged(unit, *changes, *images),
        )
    else:
        systemd.service(
            name="Start the stack and enable it at boot",
            service=paths.STACK_UNIT,
            running=True,
            enabled=True,
        )


def falco_on_host(plan: DeployPlan) -> None:
    """HOST-07: Falco with the modern eBPF driver, qcstack's rules after the package's stable
    ones, and http_output to the responder on loopback (HOST-02's firewall admits lo)."""
    steps = falco.step_names(plan.falco)
    if plan.falco.mode == "off":
        nothing_to_do(name=steps["off"], reason=steps["off"])
        return
    installed = _fact("dpkg-query -W -f='${Status} ${Version}' falco 2>/dev/null || true")
    if plan.falco.mode == "repository":
        apt.packages(name=steps["tools"], packages=["curl", "gpg"], no_recommends=True)
        keys = _fact(falco.key_fingerprints_command()).split()
        server.shell(
            name=steps["key"],
            commands=[f"sh -c {shlex.quote(falco.install_key())}"],
            _if=_unless(keys == [falco.KEY_FINGERPRINT]),
        )
        _put_text(steps["repository"], falco.SOURCES_LIST, falco.sources_list(), 0o644)
        _put_text(steps["pin"], falco.APT_PIN, falco.apt_pin(), 0o644)
        install = server.shell(
            name=steps["install"],
            commands=[f"sh -c {shlex.quote(falco.install_from_repository())}"],
            _if=_unless(installed == f"install ok installed {falco.VERSION}"),
        )
    else:
        upload = files.put(
            name=steps["upload"],
            src=str(plan.falco.package),
            dest=plan.falco.package_dest,
            user="root",
            group="root",
            mode="600",
        )
        record = _fact(f"cat {falco.INSTALLED_PACKAGE} 2>/dev/null || true")
        script = falco.install_from_package(plan.falco.package_dest, plan.falco.package_sha256)
        current = installed.startswith("install ok installed ") and (
            record == plan.falco.package_sha256
        )
        install = server.shell(
            name=steps["install"],
            commands=[f"sh -c {shlex.quote(script)}"],
            _if=WhenChanged(upload) if current else None,
        )
    masked = _fact(f"systemctl is-enabled {falco.FALCOCTL_SERVICE} 2>/dev/null || true")
    server.shell(
        name=steps["falcoctl"],
        commands=[
            f"systemctl mask {falco.FALCOCTL_SERVICE}",
            f"systemctl stop {falco.FALCOCTL_SERVICE} 2>/dev/null || true",
        ],
        _if=_unless(masked == "masked"),
    )
    _put_text(steps["stage_config"], falco.STAGED_CONFIG, plan.falco.config, 0o644)
    _put_text(steps["stage_rules"], falco.STAGED_RULES, plan.falco.rules, 0o644)
    _put_text(steps["stage_check"], falco.CHECK_CONFIG, plan.falco.check, 0o644)
    # The live files decide, not the staged ones: a hand edit of /etc/falco is put back.
    live = _fact(falco.live_sums_command()).split()
    wanted = [_sha256(plan.falco.config), _sha256(plan.falco.rules)]
    replace = server.shell(
        name=steps["replace"],
        commands=[f"sh -c {shlex.quote(falco.replace_config())}"],
        _if=_unless(live == wanted),
    )
    systemd.service(
        name=steps["restart"],
        service=falco.SERVICE,
        running=True,
        restarted=True,
        _if=WhenChanged(install, replace),
    )
    systemd.service(name=steps["service"], service=falco.SERVICE, running=True, enabled=True)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def deploy_stack(plan: DeployPlan) -> None:
    """The whole deploy, in order: host hardening first, then Docker, then the stack."""
    ssh_hardening(plan)
    docker_engine(plan)
    firewall(plan)
    security_updates(plan)
    images, previous = ship_images(plan)
    changes = stack_files(plan)
    stack_service(plan, changes, images, previous)
    falco_on_host(plan)
