"""IMG controls: what the qc-mcp image contains, how it was built, and who it runs as."""

from __future__ import annotations

import errno
import re
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any

import pytest

from infra_tests.conftest import Container, ImageFiles, StackContainers, TarEntry
from infra_tests.dockerhost import DockerHost
from infra_tests.services import SIDE_SERVICES
from stack.settings import Settings

APP_UID = 10001
SHELLS = ("/bin/sh", "/bin/bash", "/bin/dash", "/usr/bin/busybox", "/bin/ash", "/usr/bin/zsh")
TOOLS = (
    "sh",
    "bash",
    "dash",
    "ash",
    "busybox",
    "zsh",
    "apt",
    "apt-get",
    "dpkg",
    "rpm",
    "pip",
    "pip3",
    "curl",
    "wget",
    "nc",
    "ncat",
    "socat",
    "perl",
    "ssh",
    "scp",
    "su",
    "sudo",
    "mount",
    "gcc",
    "cc",
    "tar",
    "gzip",
)


def locked_pins(lock: Path) -> dict[str, str]:
    pins = {}
    for line in lock.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==([^ ;\\]+)", line)
        if match:
            pins[re.sub(r"[-_.]+", "-", match[1]).lower()] = match[2]
    return pins


def skip_unless_local(is_local: bool) -> None:
    if not is_local:
        pytest.skip("images are built on the controller, not on the Docker host under test")


@pytest.mark.control("IMG-01", "config")
def test_base_image_was_imported_from_debian_packages_not_pulled(
    docker: DockerHost, qc_mcp_image: dict[str, Any], settings: Settings, is_local: bool
) -> None:
    # On a deployed VM the images arrive by ID from the controller (HOST-05): the base stays
    # where they were built.
    skip_unless_local(is_local)
    base = qc_mcp_image["Config"]["Labels"].get("qcstack.base", "")
    assert base.startswith(f"qcstack/base:{settings.debian_suite}-"), base
    base_attrs = docker.inspect("image", base)
    assert base_attrs["RepoDigests"] == [], "a base with a registry digest was pulled"
    history = docker.check("docker history --no-trunc --format '{{.Comment}}' %s", base)
    assert "Imported from -" in history


# Each image: a locked input to tamper with, and how its build refuses the tampered copy.
# The relay has none: two static Go binaries built on the host from tools/ (IMG-01 still holds).
TAMPERABLE = {
    "qc-mcp": ("wheels/httpx-*.whl", "DO NOT MATCH THE HASHES"),
    "egress-proxy": ("debs/squid_*.deb", "computed checksum did NOT match"),
    "gateway": ("wheels/fastmcp_slim-*.whl", "DO NOT MATCH THE HASHES"),
    "falco-responder": ("wheels/starlette-*.whl", "DO NOT MATCH THE HASHES"),
}
IMAGES = ("qc-mcp", "egress-proxy", "gateway", "gateway-relay", "otel-collector", "falco-responder")


def offline_build(
    docker: DockerHost, settings: Settings, image: str, context: Path, tag: str
) -> Any:
    """Rebuilds `image` from `context` from scratch with no network at all."""
    labels = docker.inspect("image", settings.image(image))["Config"]["Labels"]
    result = docker.run(
        # --force-rm: the classic builder otherwise keeps the container of the refused step.
        "DOCKER_BUILDKIT=0 docker build --no-cache --force-rm --network none "
        "--build-arg %s -t %s %s",
        f"BASE_IMAGE={labels['qcstack.base']}",
        tag,
        str(context),
    )
    docker.run("docker rmi -f %s", tag)
    return result


@pytest.mark.control("IMG-01", "behaviour")
@pytest.mark.parametrize("image", sorted(IMAGES))
def test_image_build_needs_no_network(
    docker: DockerHost, settings: Settings, is_local: bool, image: str
) -> None:
    skip_unless_local(is_local)
    context = settings.build_dir / "context" / image
    result = offline_build(docker, settings, image, context, "qcstack-test/offline-build:probe")
    assert result.rc == 0, result.stdout[-2000:] + result.stderr[-2000:]


@pytest.mark.control("IMG-02", "config")
@pytest.mark.parametrize(
    ("service", "lock_name"),
    [("qc-mcp", "qc-mcp.txt"), ("gateway", "gateway.txt"), ("falco-responder", "responder.txt")],
)
def test_image_holds_exactly_the_locked_distributions(
    qc_mcp_files: list[TarEntry],
    side_files: ImageFiles,
    settings: Settings,
    service: str,
    lock_name: str,
) -> None:
    files = qc_mcp_files if service == "qc-mcp" else side_files[service]
    lock = settings.repo_root / "locks" / lock_name
    for line in lock.read_text().splitlines():
        if re.match(r"^[A-Za-z0-9]", line):
            assert line.rstrip().endswith("\\"), f"{line!r} is not followed by --hash lines"
    assert "--hash=sha256:" in lock.read_text()
    installed = {}
    for entry in files:
        match = re.search(r"/([^/]+)-([^-/]+)\.dist-info$", entry.path)
        if match:
            installed[re.sub(r"[-_.]+", "-", match[1]).lower()] = match[2]
    assert installed == locked_pins(lock)


@pytest.mark.control("IMG-02", "behaviour")
@pytest.mark.parametrize("image", sorted(TAMPERABLE))
def test_tampered_package_is_refused_by_the_build(
    docker: DockerHost, settings: Settings, is_local: bool, image: str
) -> None:
    skip_unless_local(is_local)
    with tempfile.TemporaryDirectory(prefix="qcstack-tamper-") as tmp:
        context = Path(tmp) / "ctx"
        shutil.copytree(settings.build_dir / "context" / image, context)
        pattern, refusal = TAMPERABLE[image]
        package = next(context.glob(pattern))
        with package.open("ab") as handle:
            handle.write(b"\0attacker bytes")
        result = offline_build(docker, settings, image, context, "qcstack-test/tampered:probe")
    assert result.rc != 0
    assert refusal in result.stdout + result.stderr


@pytest.mark.control("IMG-03", "config")
def test_server_user_is_numeric_and_not_root(
    qc_mcp: Container, qc_mcp_image: dict[str, Any]
) -> None:
    for user in (qc_mcp_image["Config"]["User"], qc_mcp.attrs["Config"]["User"]):
        uid, _, gid = user.partition(":")
        assert uid.isdigit() and gid.isdigit(), f"user {user!r} is not numeric"
        assert int(uid) == APP_UID and int(gid) == APP_UID


@pytest.mark.control("IMG-03", "config")
def test_server_user_owns_and_can_write_nothing_in_the_image(
    qc_mcp_files: list[TarEntry],
) -> None:
    owned = [e.path for e in qc_mcp_files if not e.owner.startswith("0/")]
    assert owned == []
    writable = [
        e.path
        for e in qc_mcp_files
        if e.mode[0] != "l" and (e.mode[5] == "w" or e.mode[8] == "w") and e.path != "/tmp"
    ]
    assert writable == []


@pytest.mark.control("IMG-03", "behaviour")
@pytest.mark.parametrize("call", ["os.setuid(0)", "os.setgid(0)", "os.setreuid(0, 0)"])
def test_server_user_cannot_become_root(docker: DockerHost, qc_mcp: Container, call: str) -> None:
    assert docker.attempt(qc_mcp.id, call) == errno.EPERM


@pytest.mark.control("IMG-04", "config")
def test_image_has_no_shell_package_manager_or_network_tool(qc_mcp_files: list[TarEntry]) -> None:
    found = [e.path for e in qc_mcp_files if e.path.rsplit("/", 1)[-1] in TOOLS]
    found += [e.path for e in qc_mcp_files if re.search(r"/(pip|ensurepip|setuptools)$", e.path)]
    assert found == []


@pytest.mark.control("IMG-04", "behaviour")
@pytest.mark.parametrize("shell", SHELLS)
def test_intruder_cannot_start_a_shell(docker: DockerHost, qc_mcp: Container, shell: str) -> None:
    result = docker.run("docker exec %s %s -c id", qc_mcp.id, shell)
    assert result.rc != 0
    assert "no such file or directory" in (result.stdout + result.stderr).lower()


@pytest.mark.control("IMG-04", "behaviour")
@pytest.mark.parametrize("module", ["pip", "ensurepip", "venv", "idlelib"])
def test_intruder_cannot_install_packages_from_python(
    docker: DockerHost, qc_mcp: Container, module: str
) -> None:
    result = docker.probe(
        qc_mcp.id,
        f"""
        import importlib.util
        report(found=importlib.util.find_spec({module!r}) is not None)
    """,
    )
    assert result.data == {"found": False}


@pytest.mark.control("IMG-05", "config")
def test_image_has_no_setuid_or_setgid_files(qc_mcp_files: list[TarEntry]) -> None:
    special = [e.path for e in qc_mcp_files if e.mode[3] in "sS" or e.mode[6] in "sS"]
    assert special == []


@pytest.mark.control("IMG-05", "behaviour")
def test_intruder_finds_no_setuid_binary_to_escalate_with(
    docker: DockerHost, qc_mcp: Container
) -> None:
    result = docker.probe(
        qc_mcp.id,
        f"""
        import stat
        found = []
        for top in ("/usr", "/etc", "/app", "/lib", "/lib64", "/tmp", "/run"):
            for root, dirs, files in os.walk(top):
                for name in files:
                    path = os.path.join(root, name)
                    try:
                        mode = os.lstat(path).st_mode
                    except OSError:
                        continue
                    if mode & {stat.S_ISUID | stat.S_ISGID}:
                        found.append(path)
        report(found=found)
    """,
    )
    assert result.data == {"found": []}


# The other services: the same image controls, checked on their images and from outside.


@pytest.mark.control("IMG-03", "config")
@pytest.mark.parametrize("service", sorted(SIDE_SERVICES))
def test_service_user_is_numeric_not_root_and_owns_nothing(
    stack_containers: StackContainers, side_files: ImageFiles, service: str
) -> None:
    expected = SIDE_SERVICES[service]
    assert stack_containers[service].attrs["Config"]["User"] == f"{expected.uid}:{expected.uid}"
    owned = [e.path for e in side_files[service] if not e.owner.startswith("0/")]
    assert owned == list(expected.owned_paths)


@pytest.mark.control("IMG-04", "config")
@pytest.mark.parametrize("service", sorted(SIDE_SERVICES))
def test_service_image_has_no_shell_package_manager_or_network_tool(
    side_files: ImageFiles, service: str
) -> None:
    assert [e.path for e in side_files[service] if e.path.rsplit("/", 1)[-1] in TOOLS] == []


@pytest.mark.control("IMG-04", "behaviour")
@pytest.mark.parametrize("service", sorted(SIDE_SERVICES))
@pytest.mark.parametrize("shell", SHELLS)
def test_intruder_cannot_start_a_shell_in_the_service(
    docker: DockerHost, stack_containers: StackContainers, service: str, shell: str
) -> None:
    result = docker.run("docker exec %s %s -c id", stack_containers[service].id, shell)
    assert result.rc != 0
    assert "no such file or directory" in (result.stdout + result.stderr).lower()


@pytest.mark.control("IMG-05", "config")
@pytest.mark.parametrize("service", sorted(SIDE_SERVICES))
def test_service_image_has_no_setuid_or_setgid_files(side_files: ImageFiles, service: str) -> None:
    files = side_files[service]
    assert [e.path for e in files if e.mode[3] in "sS" or e.mode[6] in "sS"] == []
