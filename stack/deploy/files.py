"""The VM's configuration files, rendered from settings: where each goes and what it holds.

Pure functions, so unit tests read exactly what the deploy writes. Each file names the control
it enforces.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence

# Where things live on the VM.
APP_DIR = "/opt/qcstack"
COMPOSE_DIR = f"{APP_DIR}/compose"
SECCOMP_DIR = f"{APP_DIR}/seccomp"
DOUBLES_DIR = f"{APP_DIR}/infra_tests/doubles"
CONFIG_DIR = "/etc/qcstack"
SECRETS_DIR = f"{CONFIG_DIR}/secrets"
COMPOSE_ENV = f"{CONFIG_DIR}/compose.env"
EGRESS_POLICY = f"{CONFIG_DIR}/egress-policy.conf"
GATEWAY_ENV = f"{CONFIG_DIR}/gateway.env"
RESPONDER_ENV = f"{CONFIG_DIR}/responder.env"
IMAGES_DIR = "/var/lib/qcstack/images"
STACK_UNIT = "qcstack.service"
FIREWALL_UNIT = "qcstack-firewall.service"
FIREWALL_RULES = f"{CONFIG_DIR}/firewall.nft"
DAEMON_JSON = "/etc/docker/daemon.json"
SSHD_DROP_IN = "/etc/ssh/sshd_config.d/10-qcstack.conf"
AUTO_UPGRADES = "/etc/apt/apt.conf.d/20auto-upgrades"
UNATTENDED_UPGRADES = "/etc/apt/apt.conf.d/52qcstack-unattended-upgrades"
COMPOSE_PLUGIN = "/usr/local/lib/docker/cli-plugins/docker-compose"
SSH_PORT = 22
FIREWALL_TABLE = "qcstack_host"

COMPOSE_DEB_VERSION = "2.26.1-4"
COMPOSE_DEB_SUITE = "trixie"
COMPOSE_DEB_SHA256 = "47681197cb2b1ab88206b42a1a92fc75f50d9530a6322d03494a473eed0408ea"
"""Debian 13's docker-compose package, the Compose v2 plugin Debian 12 lacks (DESIGN.md):
pinned by version, and by sha256 as first fetched for this pin."""

DAEMON_CONFIG: Mapping[str, object] = {
    "icc": False,
    "live-restore": True,
    "log-driver": "json-file",
    "log-opts": {"max-size": "10m", "max-file": "3"},
    "no-new-privileges": True,
    "userland-proxy": False,
}
"""HOST-04: Docker Engine's defaults for every container on the VM."""


def daemon_json() -> str:
    return json.dumps(DAEMON_CONFIG, indent=2, sort_keys=True) + "\n"


SSHD_SETTINGS: tuple[tuple[str, str], ...] = (
    ("PubkeyAuthentication", "yes"),
    ("AuthenticationMethods", "publickey"),
    ("PasswordAuthentication", "no"),
    ("KbdInteractiveAuthentication", "no"),
    ("PermitEmptyPasswords", "no"),
    ("PermitRootLogin", "prohibit-password"),
    ("MaxAuthTries", "3"),
    ("LoginGraceTime", "20"),
    ("X11Forwarding", "no"),
    ("AllowAgentForwarding", "no"),
    ("AllowTcpForwarding", "no"),
    ("PermitTunnel", "no"),
    ("PermitUserEnvironment", "no"),
)
"""HOST-01: sshd takes keys only. sshd keeps the first value it reads for a keyword, and Debian's
sshd_config includes sshd_config.d/*.conf first, so these win over anything after them."""


def sshd_drop_in() -> str:
    lines = ["# qcstack HOST-01: SSH by key only; written by the deploy, do not edit."]
    lines += [f"{key} {value}" for key, value in SSHD_SETTINGS]
    return "\n".join(lines) + "\n"


def firewall_rules(ssh_port: int = SSH_PORT) -> str:
    """HOST-02: inbound only SSH (and the ICMP that IP needs); its own table, so Docker's
    rules are never flushed, replaced atomically by `nft -f`."""
    return f"""\
# qcstack HOST-02: the VM admits SSH and nothing else; written by the deploy, do not edit.
# Its own table: declared, deleted and declared again, so loading it replaces only this table
# (Docker's tables stay) and a reload is atomic.
table inet {FIREWALL_TABLE} {{}}
delete table inet {FIREWALL_TABLE}
table inet {FIREWALL_TABLE} {{
  chain input {{
    type filter hook input priority filter; policy drop;
    iif "lo" accept
    ct state established,related accept
    ct state invalid drop
    tcp dport {ssh_port} accept
    icmp type {{ destination-unreachable, time-exceeded, parameter-problem }} accept
    icmpv6 type {{ destination-unreachable, packet-too-big, time-exceeded, parameter-problem, \
nd-neighbor-solicit, nd-neighbor-advert, nd-router-advert }} accept
  }}
}}
"""


def firewall_unit() -> str:
    return f"""\
[Unit]
Description=qcstack host firewall (HOST-02): inbound SSH only
DefaultDependencies=no
Wants=network-pre.target
Before=network-pre.target shutdown.target docker.service
Conflicts=shutdown.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/sbin/nft -f {FIREWALL_RULES}
ExecReload=/usr/sbin/nft -f {FIREWALL_RULES}

[Install]
WantedBy=sysinit.target
"""


def auto_upgrades() -> str:
    """HOST-03: apt's timers refresh the lists and run unattended-upgrade every day."""
    return 'APT::Periodic::Update-Package-Lists "1";\nAPT::Periodic::Unattended-Upgrade "1";\n'


def unattended_upgrades() -> str:
    """HOST-03: security updates from Debian's security archive, installed unattended."""
    return """\
// qcstack HOST-03: install Debian security updates unattended; written by the deploy.
Unattended-Upgrade::Origins-Pattern {
  "origin=Debian,codename=${distro_codename}-security,label=Debian-Security";
};
Unattended-Upgrade::Automatic-Reboot "false";
Unattended-Upgrade::Remove-Unused-Dependencies "true";
"""


def compose_files(test_stack: bool) -> tuple[str, ...]:
    """The compose files on the VM, in order; a test deploy adds the API double (test.yaml)."""
    return ("compose.yaml", "test.yaml") if test_stack else ("compose.yaml",)


def compose_command(project: str, test_stack: bool, *args: str) -> str:
    """`docker compose` for the deployed project, as the unit and the tests run it."""
    files = [arg for name in compose_files(test_stack) for arg in ("-f", f"{COMPOSE_DIR}/{name}")]
    return shlex.join(
        ["/usr/bin/docker", "compose", "--env-file", COMPOSE_ENV, "-p", project, *files, *args]
    )


WAIT_SECONDS = 180
"""How long `compose up --wait` waits for every service to be healthy before it fails."""


def stack_unit(project: str, test_stack: bool) -> str:
    """The systemd unit that starts the stack at boot. Images are never pulled: they arrive by
    ID from the controller (HOST-05). A reload recreates every container, so changed secrets
    (bind mounts of files) reach them; the volumes (audit log, approvals) stay."""
    up = (
        "up",
        "--detach",
        "--wait",
        "--wait-timeout",
        str(WAIT_SECONDS),
        "--pull",
        "never",
        "--remove-orphans",
    )
    return f"""\
[Unit]
Description=qcstack: the hardened QuantConnect MCP stack (compose project {project})
# Wants, not Requires: a restart of dockerd (an upgrade, a daemon.json change) must not stop
# the stack; with live-restore its containers keep running through it (HOST-04).
Wants=docker.service
After=docker.service {FIREWALL_UNIT}

[Service]
Type=oneshot
RemainAfterExit=yes
TimeoutStartSec={WAIT_SECONDS + 120}
ExecStart={compose_command(project, test_stack, *up)}
ExecReload={compose_command(project, test_stack, *up, "--force-recreate")}
ExecStop={compose_command(project, test_stack, "down", "--timeout", "10")}

[Install]
WantedBy=multi-user.target
"""


def compose_env(
    *,
    image_tag: str,
    egress_subnet: str,
    gateway_port: int,
    responder_port: int,
) -> str:
    """The variables compose.yaml reads, for the VM's paths; none is a secret."""
    values = {
        "QCSTACK_IMAGE_TAG": image_tag,
        "QCSTACK_SECRETS_DIR": SECRETS_DIR,
        "QCSTACK_SECCOMP_DIR": SECCOMP_DIR,
        "QCSTACK_EGRESS_SUBNET": egress_subnet,
        "QCSTACK_EGRESS_POLICY": EGRESS_POLICY,
        "QCSTACK_GATEWAY_ENV": GATEWAY_ENV,
        "QCSTACK_GATEWAY_PORT": str(gateway_port),
        "QCSTACK_RESPONDER_ENV": RESPONDER_ENV,
        "QCSTACK_RESPONDER_PORT": str(responder_port),
    }
    return "".join(f"{name}={value}\n" for name, value in values.items())


def install_compose_plugin(mirror: str) -> str:
    """Shell script: the pinned Compose plugin from Debian 13, through a temporary low-pinned
    source removed afterwards, checked by sha256 before it is unpacked."""
    deb = f"docker-compose_{COMPOSE_DEB_VERSION}_amd64.deb"
    return f"""\
set -eu
list=/etc/apt/sources.list.d/qcstack-{COMPOSE_DEB_SUITE}.list
pref=/etc/apt/preferences.d/qcstack-{COMPOSE_DEB_SUITE}
work=$(mktemp -d)
trap 'rm -rf "$work" "$list" "$pref"; apt-get update -qq' EXIT
echo {shlex.quote(f"deb {mirror} {COMPOSE_DEB_SUITE} main")} > "$list"
printf 'Package: *\\nPin: release n={COMPOSE_DEB_SUITE}\\nPin-Priority: 50\\n' > "$pref"
apt-get update -qq
cd "$work"
apt-get download -qq docker-compose={COMPOSE_DEB_VERSION}
echo "{COMPOSE_DEB_SHA256}  {deb}" | sha256sum -c --quiet
dpkg-deb -x {deb} unpacked
install -D -m 0755 unpacked/usr/libexec/docker/cli-plugins/docker-compose {COMPOSE_PLUGIN}
"""


def verify_images(images: Sequence[tuple[str, str]]) -> str:
    """Shell script that fails unless each tag on the VM is exactly the controller's image ID.
    A tag that names another image is removed first (fail closed): nothing starts under that
    name, at boot or otherwise, until a deploy ships the right image."""
    lines = ["set -eu", "status=0"]
    for tag, image_id in images:
        quoted = shlex.quote(tag)
        lines.append(
            f'if [ "$(docker image inspect -f {{{{.Id}}}} {quoted} 2>/dev/null)" != '
            f"{shlex.quote(image_id)} ]; then echo {shlex.quote(f'{tag} is not {image_id}')} >&2; "
            f"docker image rm --no-prune {quoted} >/dev/null 2>&1 || true; status=1; fi"
        )
    lines.append('exit "$status"')
    return "\n".join(lines) + "\n"


def upgrade_with_rollback(previous: Sequence[tuple[str, str]]) -> str:
    """Shell script: recreate the stack with the images just loaded; if it does not become
    healthy, tag the previous image IDs again, recreate it with them, and fail. The previous
    images are still on the VM (their containers were using them until now)."""
    restore = "\n".join(
        f"docker tag {shlex.quote(image_id)} {shlex.quote(tag)}" for tag, image_id in previous
    )
    return f"""\
set -u
if systemctl reload {STACK_UNIT}; then exit 0; fi
echo "qcstack: the stack did not become healthy with the new images; rolling back" >&2
{restore}
if systemctl reload {STACK_UNIT}; then
  echo "qcstack: rolled back: the stack runs the previous images again" >&2
else
  echo "qcstack: the rollback did not become healthy either: see journalctl -u {STACK_UNIT}" >&2
fi
exit 1
"""
