"""Falco on the VM (HOST-07): where its files go, what they hold, and how it is installed.

Pure functions of settings and the repository's falco/ files, so unit tests and the HOST-07
infra tests read exactly what the deploy writes.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from stack.process import CommandError

VERSION = "0.44.1"
"""The Falco release the deploy installs from Falco's repository (apt's `falco=VERSION`)."""

REPOSITORY = "https://download.falco.org/packages/deb"
REPOSITORY_SUITE = "stable"
KEY_URL = "https://falco.org/repo/falcosecurity-packages.asc"
KEY_FINGERPRINT = "478B2FBBC75F4237B731DA4365106822B35B1B1F"
"""The key that signs Falco's packages since the rotation announced with Falco 0.43.0; only
this key, exported alone into its own keyring, is trusted for the repository."""

KEYRING = "/usr/share/keyrings/qcstack-falcosecurity.gpg"
SOURCES_LIST = "/etc/apt/sources.list.d/qcstack-falcosecurity.list"
APT_PIN = "/etc/apt/preferences.d/qcstack-falco"
CONFIG = "/etc/falco/falco.yaml"
RULES = "/etc/falco/rules.d/qcstack_rules.yaml"
STABLE_RULES = "/etc/falco/falco_rules.yaml"
"""Falco's stable rules, shipped and kept by the package; ours load after them."""

SERVICE = "falco-modern-bpf.service"
"""The package's unit that runs Falco with the modern eBPF driver (CO-RE, inside the binary:
no kernel module, no dkms, no kernel headers)."""
FALCOCTL_SERVICE = "falcoctl-artifact-follow.service"
"""falcoctl's service that would replace the rules on a running host: masked, so the rules
are the ones this repository ships and nothing else."""

STATE_DIR = "/var/lib/qcstack/falco"
STAGE_DIR = "/etc/qcstack/falco"
"""The new config and rules are uploaded here and checked with `falco --dry-run` before they
replace the live ones (Falco watches its files and would load a broken one at once)."""
STAGED_CONFIG = f"{STAGE_DIR}/falco.yaml"
STAGED_RULES = f"{STAGE_DIR}/rules.d/qcstack_rules.yaml"
CHECK_CONFIG = f"{STAGE_DIR}/falco-check.yaml"
INSTALLED_PACKAGE = f"{STATE_DIR}/installed-package.sha256"
"""With falco=package: the sha256 of the .deb the deploy installed last."""

INSTALL_ENVIRONMENT = {
    "DEBIAN_FRONTEND": "noninteractive",
    "FALCO_FRONTEND": "noninteractive",
    "FALCO_DRIVER_CHOICE": "modern_ebpf",
    "FALCOCTL_ENABLED": "no",
}
"""What the package's maintainer scripts read instead of asking: the modern eBPF driver (its
unit enabled), falcoctl's services off."""

SOURCE_CONFIG = "falco/falco.yaml"
SOURCE_RULES = "falco/qcstack_rules.yaml"


def responder_url(responder_port: int) -> str:
    return f"http://127.0.0.1:{responder_port}/alerts"


def _load(text: str, source: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise CommandError(f"{source} is not YAML: {error}") from error
    if not isinstance(data, dict):
        raise CommandError(f"{source} is not a mapping of Falco's settings")
    return data


def _dump(data: dict[str, Any], header: str) -> str:
    return f"# qcstack HOST-07: {header}\n" + yaml.safe_dump(
        data, sort_keys=False, default_flow_style=False
    )


def render_config(source_text: str, responder_port: int, source: str = SOURCE_CONFIG) -> str:
    """falco/falco.yaml with http_output aimed at the responder's port on this host; refuses a
    config that would not run the modern eBPF driver or not post alerts to the responder."""
    data = _load(source_text, source)
    kind = (data.get("engine") or {}).get("kind")
    if kind != "modern_ebpf":
        raise CommandError(f"{source}: engine.kind is {kind!r}; HOST-07 runs modern_ebpf")
    http = data.get("http_output")
    if not isinstance(http, dict) or http.get("enabled") is not True:
        raise CommandError(f"{source}: http_output must be enabled: it carries every alert")
    if data.get("json_output") is not True:
        raise CommandError(f"{source}: json_output must be true: the responder reads JSON")
    http["url"] = responder_url(responder_port)
    rules = data.get(_rules_key(data))
    if not isinstance(rules, list) or not any(_loads_our_rules(str(p)) for p in rules):
        raise CommandError(f"{source}: rules_files must list {RULES} (or its folder)")
    return _dump(data, f"rendered by the deploy from {source}; do not edit.")


def _rules_key(data: dict[str, Any]) -> str:
    """Falco reads `rules_files`, and still `rules_file`, its older name."""
    return "rules_file" if "rules_file" in data and "rules_files" not in data else "rules_files"


def _loads_our_rules(path: str) -> bool:
    return path.rstrip("/") in (RULES, str(Path(RULES).parent))


def check_config(rendered: str) -> str:
    """The rendered config with our rules read from the staging folder instead of the live one,
    for `falco -c ... --dry-run` before anything live changes."""
    data = _load(rendered, CONFIG)
    staged_folder = str(Path(STAGED_RULES).parent)
    key = _rules_key(data)
    data[key] = [staged_folder if _loads_our_rules(str(path)) else path for path in data[key]]
    return _dump(data, f"{CONFIG} with the staged rules, for the deploy's `falco --dry-run`.")


@dataclass(frozen=True)
class FalcoPlan:
    """What the deploy does about Falco; mode "off" installs nothing and removes nothing."""

    mode: str
    responder_port: int = 0
    off_because: str = ""
    """Why this deploy leaves Falco off whatever the settings say (the test VM's deploys)."""
    config: str = ""
    """/etc/falco/falco.yaml as rendered."""
    rules: str = ""
    """/etc/falco/rules.d/qcstack_rules.yaml, as in the repository."""
    check: str = ""
    package: Path | None = None
    package_sha256: str = ""

    @property
    def package_dest(self) -> str:
        name = self.package.name if self.package else "falco.deb"
        return f"{STATE_DIR}/{name}"


def make_falco_plan(
    mode: str,
    repo_root: Path,
    responder_port: int,
    package: Path | None,
    package_sha256: str,
    off_because: str = "",
) -> FalcoPlan:
    if mode == "off" or off_because:
        return FalcoPlan("off", responder_port, off_because=off_because)
    if mode == "package" and (package is None or not package_sha256):
        raise CommandError("falco=package needs falco_package and falco_package_sha256")
    sources = {}
    for relative in (SOURCE_CONFIG, SOURCE_RULES):
        path = repo_root / relative
        if not path.is_file():
            raise CommandError(f"{path} is missing: the deploy ships it to Falco on the VM")
        sources[relative] = path.read_text()
    config = render_config(sources[SOURCE_CONFIG], responder_port)
    return FalcoPlan(
        mode,
        responder_port,
        config=config,
        rules=sources[SOURCE_RULES],
        check=check_config(config),
        package=package if mode == "package" else None,
        package_sha256=package_sha256 if mode == "package" else "",
    )


def sources_list() -> str:
    return (
        "# qcstack HOST-07: Falco's repository, trusted with its pinned key alone.\n"
        f"deb [signed-by={KEYRING}] {REPOSITORY} {REPOSITORY_SUITE} main\n"
    )


def apt_pin() -> str:
    """Holds Falco at the pinned release whatever the repository offers (also against an
    operator's `apt upgrade`); unattended-upgrades takes Debian's security archive alone."""
    return (
        "# qcstack HOST-07: Falco stays at the release the deploy pins.\n"
        f"Package: falco\nPin: version {VERSION}\nPin-Priority: 1001\n"
    )


def install_key(keyring: str = KEYRING, fingerprint: str = KEY_FINGERPRINT) -> str:
    """Shell script: Falco's key fetched, and only the key with the pinned fingerprint written
    into the repository's keyring; fails, writing nothing, when it is not there."""
    return f"""\
set -eu
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
curl -fsSL --proto =https --max-time 60 -o "$work/key.asc" {shlex.quote(KEY_URL)}
gpg --batch --quiet --homedir "$work" --import "$work/key.asc"
gpg --batch --homedir "$work" --export {fingerprint} > "$work/keyring.gpg"
if [ ! -s "$work/keyring.gpg" ]; then
  echo "qcstack: {KEY_URL} does not hold the pinned key {fingerprint}" >&2
  exit 1
fi
install -m 0644 "$work/keyring.gpg" {shlex.quote(keyring)}
"""


def key_fingerprints_command(keyring: str = KEYRING) -> str:
    """Prints the primary fingerprints in the repository's keyring (nothing when absent)."""
    quoted = shlex.quote(keyring)
    return (
        f"[ -f {quoted} ] && gpg --batch --with-colons --show-keys {quoted} 2>/dev/null "
        '| awk -F: \'$1 == "pub" {p = 1; next} p && $1 == "fpr" {print $10; p = 0}\' || true'
    )


def _apt_install(target: str) -> str:
    env = " ".join(f"{name}={value}" for name, value in INSTALL_ENVIRONMENT.items())
    # confold: the deploy's falco.yaml stays when a new package ships its own.
    return (
        f"env {env} apt-get install -y -q --no-install-recommends --allow-downgrades "
        "-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "
        f"{shlex.quote(target)}"
    )


def install_from_repository() -> str:
    return f"set -eu\napt-get update -qq\n{_apt_install(f'falco={VERSION}')}\n"


def install_from_package(dest: str, sha256: str) -> str:
    """Shell script: the uploaded .deb checked by sha256, then installed, then recorded."""
    return f"""\
set -eu
echo {shlex.quote(f"{sha256}  {dest}")} | sha256sum -c --quiet
{_apt_install(dest)}
echo {sha256} > {INSTALLED_PACKAGE}
"""


def replace_config() -> str:
    """Shell script: Falco checks the staged config and rules (`--dry-run` loads both and
    processes no event), and only then do they replace the live ones."""
    return f"""\
set -eu
falco -c {CHECK_CONFIG} --dry-run
install -D -m 0644 -o root -g root {STAGED_RULES} {RULES}
install -m 0644 -o root -g root {STAGED_CONFIG} {CONFIG}
"""


def live_sums_command() -> str:
    """sha256 of the live config and rules, one a line (nothing for a missing file)."""
    return f"sha256sum {CONFIG} {RULES} 2>/dev/null | cut -d' ' -f1 || true"


def step_names(plan: FalcoPlan) -> dict[str, str]:
    """The deploy's Falco operations by step, in order, as the deploy (and its dry run) prints
    them; which steps there are depends on the mode."""
    if plan.mode == "off":
        why = plan.off_because or "falco=off"
        return {"off": f"HOST-07 Falco is off ({why}): nothing installed, nothing removed"}
    steps: dict[str, str] = {}
    if plan.mode == "repository":
        steps |= {
            "tools": "HOST-07 Install curl and gpg (to fetch and check Falco's key)",
            "key": f"HOST-07 Falco's signing key, pinned by fingerprint {KEY_FINGERPRINT}",
            "repository": f"HOST-07 Falco's apt repository: {REPOSITORY} {REPOSITORY_SUITE} main",
            "pin": f"HOST-07 Hold Falco at {VERSION} (apt preferences)",
            "install": f"HOST-07 Install Falco {VERSION} from its repository "
            "(modern eBPF driver: no kernel module, no dkms)",
        }
    else:
        name = plan.package.name if plan.package else "?"
        steps |= {
            "upload": f"HOST-07 Upload the Falco package {name} to {plan.package_dest}",
            "install": f"HOST-07 Check the Falco package's sha256 ({plan.package_sha256}) and "
            "install it (modern eBPF driver: no kernel module, no dkms)",
        }
    return steps | {
        "falcoctl": f"HOST-07 Mask {FALCOCTL_SERVICE}: the rules are the deploy's alone",
        "stage_config": f"HOST-07 Stage Falco's config (http_output to "
        f"{responder_url(plan.responder_port)})",
        "stage_rules": "HOST-07 Stage qcstack's Falco rules",
        "stage_check": "HOST-07 Stage the config that checks the staged rules",
        "replace": f"HOST-07 Check Falco's config and rules (falco --dry-run), then install them "
        f"as {CONFIG} and {RULES}",
        "restart": f"HOST-07 Restart {SERVICE} when Falco, its config or its rules changed",
        "service": f"HOST-07 {SERVICE} runs and starts at boot",
    }
