"""HOST-07's deploy without a VM: Falco's rendered config, its settings, and the plan's steps."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from pydantic import ValidationError

from stack.cli import TEST_VM_FALCO_OFF
from stack.deploy import falco, files, plan
from stack.process import CommandError
from stack.secrets import STACK_SECRETS
from stack.settings import Settings

REPO = Path(__file__).resolve().parents[1]
CONFIG_SCHEMA = REPO.parent / "shared/reference/falco-0.44-config-schema.json"
SOURCE = (REPO / falco.SOURCE_CONFIG).read_text()
PORT = 18479


def rendered(port: int = PORT) -> dict[str, Any]:
    return dict(yaml.safe_load(falco.render_config(SOURCE, port)))


def test_rendered_config_posts_alerts_to_the_responder_on_loopback() -> None:
    config = rendered()
    assert config["http_output"]["url"] == f"http://127.0.0.1:{PORT}/alerts"
    assert config["http_output"]["enabled"] is True
    assert config["engine"]["kind"] == "modern_ebpf"
    # Only the port changes: everything else is the repository's falco.yaml.
    source = yaml.safe_load(SOURCE)
    source["http_output"]["url"] = config["http_output"]["url"]
    assert config == source


def test_rendered_config_passes_falcos_own_config_schema() -> None:
    schema = json.loads(CONFIG_SCHEMA.read_text())
    jsonschema.validate(rendered(), schema)
    jsonschema.validate(
        yaml.safe_load(falco.check_config(falco.render_config(SOURCE, 8079))), schema
    )


def _without_driver(config: dict[str, Any]) -> None:
    config["engine"] = {"kind": "kmod"}


def _without_http_output(config: dict[str, Any]) -> None:
    config["http_output"]["enabled"] = False


def _without_json(config: dict[str, Any]) -> None:
    config["json_output"] = False


def _without_our_rules(config: dict[str, Any]) -> None:
    config["rules_files"] = [falco.STABLE_RULES]


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (_without_driver, "engine.kind is 'kmod'"),
        (_without_http_output, "http_output must be enabled"),
        (_without_json, "json_output must be true"),
        (_without_our_rules, "rules_files must list"),
    ],
)
def test_render_refuses_a_config_that_would_not_report_to_the_responder(
    spoil: Any, message: str
) -> None:
    config = yaml.safe_load(SOURCE)
    spoil(config)
    with pytest.raises(CommandError, match=message):
        falco.render_config(yaml.safe_dump(config), PORT)


def test_the_check_loads_the_staged_rules_after_the_stable_ones() -> None:
    check = yaml.safe_load(falco.check_config(falco.render_config(SOURCE, PORT)))
    assert check["rules_files"][0] == falco.STABLE_RULES
    assert str(Path(falco.STAGED_RULES).parent) in check["rules_files"]
    assert not any(str(p).startswith("/etc/falco/rules.d") for p in check["rules_files"])


def test_new_config_is_checked_by_falco_before_it_goes_live() -> None:
    script = falco.replace_config()
    assert f"falco -c {falco.CHECK_CONFIG} --dry-run" in script
    assert script.startswith("set -eu")
    assert script.index("--dry-run") < script.index(falco.RULES) < script.index(f" {falco.CONFIG}")


def test_signing_key_is_trusted_only_by_its_pinned_fingerprint() -> None:
    script = falco.install_key()
    assert f"--export {falco.KEY_FINGERPRINT}" in script
    assert script.index('[ ! -s "$work/keyring.gpg" ]') < script.index("install -m 0644")
    assert "--proto =https" in script
    assert f"[signed-by={falco.KEYRING}]" in falco.sources_list()
    assert "https://download.falco.org/packages/deb stable main" in falco.sources_list()


def test_falco_installs_at_its_pinned_release_with_the_modern_ebpf_driver() -> None:
    script = falco.install_from_repository()
    assert f"falco={falco.VERSION}" in script
    assert "FALCO_DRIVER_CHOICE=modern_ebpf" in script
    assert "FALCOCTL_ENABLED=no" in script
    assert "FALCO_FRONTEND=noninteractive" in script
    assert "--no-install-recommends" in script  # no dkms, no kernel headers
    assert "--force-confold" in script  # an upgrade keeps the deploy's falco.yaml
    assert f"Pin: version {falco.VERSION}" in falco.apt_pin()


def test_package_is_checked_by_sha256_before_it_is_installed() -> None:
    script = falco.install_from_package("/var/lib/qcstack/falco/f.deb", "a" * 64)
    assert f"{'a' * 64}  /var/lib/qcstack/falco/f.deb" in script
    assert script.index("sha256sum -c") < script.index("apt-get install")
    assert "FALCO_DRIVER_CHOICE=modern_ebpf" in script


def test_firewall_still_admits_loopback_for_falcos_alerts() -> None:
    assert '    iif "lo" accept\n' in files.firewall_rules()  # HOST-02 lets Falco reach 127.0.0.1


@pytest.fixture
def deb(tmp_path: Path) -> Path:
    package = tmp_path / "falco-0.44.1-x86_64.deb"
    package.write_bytes(b"not really a deb: the unit tests never install it")
    return package


def make_plan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: Settings, off_because: str = ""
) -> plan.DeployPlan:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for name in STACK_SECRETS:
        (secrets / name).write_text("x")
    monkeypatch.setattr(
        plan, "image_ids", lambda tags: tuple(plan.Image(t, "sha256:" + "0" * 64) for t in tags)
    )
    return plan.make_plan(
        settings,
        project="qcstack",
        secrets_dir=secrets,
        test_stack=False,
        gateway_port=8080,
        falco_off_because=off_because,
    )


def test_plan_from_the_repository_lists_key_repository_release_files_and_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = make_plan(tmp_path, monkeypatch, Settings(falco="repository", responder_port=PORT))
    steps = list(falco.step_names(made.falco).values())
    expected = [
        f"pinned by fingerprint {falco.KEY_FINGERPRINT}",
        f"apt repository: {falco.REPOSITORY} stable main",
        f"Hold Falco at {falco.VERSION}",
        f"Install Falco {falco.VERSION} from its repository (modern eBPF driver",
        f"http_output to http://127.0.0.1:{PORT}/alerts",
        "Stage qcstack's Falco rules",
        f"falco --dry-run), then install them as {falco.CONFIG} and {falco.RULES}",
        f"Restart {falco.SERVICE}",
        f"{falco.SERVICE} runs and starts at boot",
    ]
    found = [next(i for i, s in enumerate(steps) if text in s) for text in expected]
    assert found == sorted(found), steps  # in this order
    assert all(step.startswith("HOST-07 ") for step in steps)
    assert made.falco.config == falco.render_config(SOURCE, PORT)
    assert made.falco.rules == (REPO / falco.SOURCE_RULES).read_text()
    # compose publishes the responder on the very port Falco posts to
    assert f"QCSTACK_RESPONDER_PORT={PORT}\n" in made.rendered[files.COMPOSE_ENV][0]


def test_plan_from_a_package_uploads_it_and_checks_its_sha256(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, deb: Path
) -> None:
    sha256 = hashlib.sha256(deb.read_bytes()).hexdigest()
    settings = Settings(
        falco="package", falco_package=deb, falco_package_sha256=sha256, responder_port=PORT
    )
    made = make_plan(tmp_path, monkeypatch, settings)
    steps = falco.step_names(made.falco)
    assert (
        steps["upload"]
        == f"HOST-07 Upload the Falco package {deb.name} to {falco.STATE_DIR}/{deb.name}"
    )
    assert f"sha256 ({sha256})" in steps["install"]
    assert not {"key", "repository", "pin"} & set(steps)  # nothing from Falco's repository
    assert {"replace", "restart", "service"} <= set(steps)


def test_plan_with_falco_off_installs_nothing_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = make_plan(tmp_path, monkeypatch, Settings(falco="off", responder_port=PORT))
    assert falco.step_names(made.falco) == {
        "off": "HOST-07 Falco is off (falco=off): nothing installed, nothing removed"
    }
    assert made.falco.config == made.falco.rules == ""


def test_test_vm_is_deployed_with_falco_off_and_the_plan_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = make_plan(
        tmp_path, monkeypatch, Settings(falco="repository", responder_port=PORT), TEST_VM_FALCO_OFF
    )
    (step,) = falco.step_names(made.falco).values()
    assert step == f"HOST-07 Falco is off ({TEST_VM_FALCO_OFF}): nothing installed, nothing removed"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"falco": "package"}, "falco=package needs falco_package"),
        ({"falco": "package", "falco_package": "/nonexistent/falco.deb"}, "is not a readable file"),
        ({"falco": "package", "falco_package": "DEB"}, "needs falco_package_sha256"),
        (
            {"falco": "package", "falco_package": "DEB", "falco_package_sha256": "abc"},
            "falco_package_sha256 'abc' is not a sha256",
        ),
        ({"falco": "kmod"}, "Input should be 'repository', 'package' or 'off'"),
    ],
)
def test_falco_settings_refuse_what_cannot_be_deployed(
    values: dict[str, str], message: str, deb: Path
) -> None:
    values = {key: str(deb) if value == "DEB" else value for key, value in values.items()}
    with pytest.raises(ValidationError, match=message):
        Settings(**values)  # type: ignore[arg-type]


FAKE_CURL = """\
#!/bin/sh
# Stands in for the download alone: copies the test's key file to curl's -o.
while [ $# -gt 0 ]; do [ "$1" = -o ] && out=$2; shift; done
cp "$QCSTACK_TEST_KEY_FILE" "$out"
"""


@pytest.fixture
def served_keys(tmp_path: Path) -> Iterator[tuple[Path, list[str]]]:
    """Two throwaway signing keys, armored in one file as a repository would serve them; yields
    (the file, their fingerprints)."""
    if shutil.which("gpg") is None:
        pytest.skip("gpg is not installed on this machine: the key script's check needs it")
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    gpg = ["gpg", "--batch", "--quiet", "--homedir", str(home)]
    for name in ("first", "second"):
        user = f"{name} <{name}@qcstack.invalid>"
        subprocess.run(
            [*gpg, "--passphrase", "", "--quick-gen-key", user, "ed25519", "sign", "never"],
            check=True,
            capture_output=True,
        )
    listing = subprocess.run(
        [*gpg, "--with-colons", "--list-keys"], check=True, capture_output=True, text=True
    ).stdout
    fingerprints = [
        line.split(":")[9]
        for previous, line in pairwise(listing.splitlines())
        if previous.startswith("pub:") and line.startswith("fpr:")
    ]
    served = tmp_path / "key.asc"
    served.write_bytes(subprocess.run([*gpg, "--armor", "--export"], capture_output=True).stdout)
    yield served, fingerprints
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], check=False)


def run_key_script(tmp_path: Path, served: Path, keyring: Path, fingerprint: str) -> Any:
    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    (fake / "curl").write_text(FAKE_CURL)
    (fake / "curl").chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{fake}:{os.environ['PATH']}",
        "QCSTACK_TEST_KEY_FILE": str(served),
    }
    script = falco.install_key(str(keyring), fingerprint)
    return subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True)


def fingerprints_in(keyring: Path) -> list[str]:
    command = falco.key_fingerprints_command(str(keyring))
    home = keyring.parent / "show-keys"  # gpg makes its home folder: not this machine's ~/.gnupg
    home.mkdir(mode=0o700, exist_ok=True)
    env = {**os.environ, "GNUPGHOME": str(home)}
    return subprocess.run(
        ["sh", "-c", command], env=env, capture_output=True, text=True
    ).stdout.split()


def test_keyring_holds_the_pinned_key_alone_of_what_is_served(
    tmp_path: Path, served_keys: tuple[Path, list[str]]
) -> None:
    served, (pinned, other) = served_keys
    keyring = tmp_path / "falco.gpg"
    result = run_key_script(tmp_path, served, keyring, pinned)
    assert result.returncode == 0, result.stderr
    assert fingerprints_in(keyring) == [pinned]  # the other served key is not trusted
    assert other not in fingerprints_in(keyring)


def test_a_served_key_without_the_pinned_fingerprint_is_refused(
    tmp_path: Path, served_keys: tuple[Path, list[str]]
) -> None:
    served, _ = served_keys
    keyring = tmp_path / "falco.gpg"
    result = run_key_script(tmp_path, served, keyring, falco.KEY_FINGERPRINT)
    assert result.returncode == 1
    assert f"does not hold the pinned key {falco.KEY_FINGERPRINT}" in result.stderr
    assert not keyring.exists()
    assert fingerprints_in(keyring) == []
