"""Image builds: the base, the recipes and their staged contexts, deb locks and the Go tools."""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import pytest

from stack.build import debs, gotools, images
from stack.build.base import base_tag, ensure_base_image
from stack.build.wheelhouse import fetch_wheels
from stack.process import CommandError
from stack.settings import Settings


def test_pulled_base_image_is_used_as_configured_without_building() -> None:
    settings = Settings(_env_file=None, base_image="registry.example/python:3.11")  # type: ignore[call-arg]
    assert ensure_base_image(settings) == "registry.example/python:3.11"


def test_base_tag_changes_with_its_recipe() -> None:
    bookworm = base_tag(Settings(_env_file=None))  # type: ignore[call-arg]
    trixie = base_tag(Settings(_env_file=None, debian_suite="trixie"))  # type: ignore[call-arg]
    assert bookworm.startswith("qcstack/base:bookworm-") and trixie.startswith(
        "qcstack/base:trixie-"
    )
    assert bookworm.split("-")[-1] != trixie.split("-")[-1]


def test_unchanged_lock_is_not_fetched_again(tmp_path: Path) -> None:
    lock = tmp_path / "empty.txt"
    lock.write_text("# nothing pinned\n")
    settings = Settings(_env_file=None, build_dir=tmp_path / "build")  # type: ignore[call-arg]
    target = tmp_path / "build" / "wheelhouse" / "empty"
    target.mkdir(parents=True)
    (target / ".lock-sha256").write_text(hashlib.sha256(lock.read_bytes()).hexdigest())
    # A matching stamp means no pip run at all: this would fail offline otherwise.
    assert fetch_wheels(settings, lock) == target


# --- Image recipes: every input optional, the egress proxy from Debian packages and a Go tool.

REPO = Path(__file__).resolve().parent.parent
DEB_LOCK = REPO / "locks" / "egress-proxy.debs"


def fake_inputs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Stands in for the fetches and the Go build, which need the network and a toolchain."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "pkg-1.0-py3-none-any.whl").write_bytes(b"wheel")
    debs = tmp_path / "debs"
    debs.mkdir()
    (debs / "squid_5.7_amd64.deb").write_bytes(b"deb")
    tool = tmp_path / "healthcheck"
    tool.write_bytes(b"\x7fELF")
    monkeypatch.setattr(images, "fetch_wheels", lambda settings, lock: wheels)
    monkeypatch.setattr(images, "fetch_debs", lambda settings, lock: debs)
    monkeypatch.setattr(images, "build_go_tool", lambda settings, name: tool)


def recipe(name: str) -> images.ImageRecipe:
    return next(r for r in images.IMAGES if r.name == name)


def staged(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str) -> tuple[Path, set[str]]:
    """Stages `name`'s build context from fake inputs; returns it and the files in it."""
    fake_inputs(monkeypatch, tmp_path)
    settings = Settings(_env_file=None, build_dir=tmp_path / "build")  # type: ignore[call-arg]
    context = images.stage_context(settings, recipe(name))
    return context, {str(p.relative_to(context)) for p in context.rglob("*") if p.is_file()}


def test_every_recipe_has_its_dockerfile_locks_tools_and_sources() -> None:
    assert {r.name for r in images.IMAGES} == {
        "qc-mcp",
        "egress-proxy",
        "gateway",
        "gateway-relay",
        "otel-collector",
        "falco-responder",
    }
    for r in images.IMAGES:
        assert (REPO / "images" / r.name / "Dockerfile").is_file()
        for lock in (r.python_lock, r.deb_lock):
            assert lock is None or (REPO / "locks" / lock).is_file()
        for tool in r.go_tools:
            assert (REPO / "tools" / tool / "go.mod").is_file()
        for folder in r.sources:
            assert (REPO / folder / "__init__.py").is_file()


def test_server_context_is_wheels_and_no_debs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake_inputs(monkeypatch, tmp_path)
    files = images.context_files(Settings(_env_file=None), recipe("qc-mcp"))  # type: ignore[call-arg]
    assert files["requirements.txt"] == REPO / "locks" / "qc-mcp.txt"
    assert "wheels/pkg-1.0-py3-none-any.whl" in files and "assemble_rootfs.py" in files
    assert not any(k.startswith("debs") for k in files) and "healthcheck" not in files


def test_proxy_context_is_debs_and_the_healthcheck(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    context, files = staged(monkeypatch, tmp_path, "egress-proxy")
    assert files == {
        "Dockerfile",
        "squid.conf",
        "assemble_rootfs.py",
        "debs.lock",
        "debs/squid_5.7_amd64.deb",
        "healthcheck",
    }
    assert (context / "debs.lock").read_bytes() == DEB_LOCK.read_bytes()


def test_server_and_proxy_contexts_stage_no_repository_sources(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Their build contexts, and so their images, stay what they were before recipes had sources.
    fake_inputs(monkeypatch, tmp_path)
    for name in ("qc-mcp", "egress-proxy"):
        assert recipe(name).sources == ()
        files = images.context_files(Settings(_env_file=None), recipe(name))  # type: ignore[call-arg]
        assert not any(k.startswith("src/") for k in files)


def test_relay_context_is_two_static_binaries_and_nothing_else(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _, files = staged(monkeypatch, tmp_path, "gateway-relay")
    assert files == {"Dockerfile", "assemble_rootfs.py", "relay", "healthcheck"}


def test_relay_image_is_from_scratch_non_root_with_the_relay_as_entry_point() -> None:
    dockerfile = (REPO / "images" / "gateway-relay" / "Dockerfile").read_text()
    final = dockerfile[dockerfile.rindex("\nFROM ") :]
    assert final.startswith("\nFROM scratch\nCOPY relay healthcheck /usr/local/bin/\n")
    assert "\nUSER 10005:10005\n" in final
    assert final.rstrip().endswith('ENTRYPOINT ["/usr/local/bin/relay"]')


def test_proxy_image_is_from_scratch_non_root_squid_in_the_foreground() -> None:
    dockerfile = (REPO / "images" / "egress-proxy" / "Dockerfile").read_text()
    final = dockerfile[dockerfile.rindex("\nFROM ") :]
    assert final.startswith("\nFROM scratch\n")
    assert "\nUSER 10002:10002\n" in final
    assert 'ENTRYPOINT ["/usr/sbin/squid", "-N", "-f", "/etc/squid/squid.conf"]' in final
    assert "sha256sum --strict --quiet -c" in dockerfile  # IMG-02 for the .deb files too


# --- The gateway: its own code from gateway/ on a trimmed FastMCP lock

GATEWAY_LOCK = REPO / "locks" / "gateway.txt"
GATEWAY_DOCKERFILE = REPO / "images" / "gateway" / "Dockerfile"
# What scripts/lock leaves out of the gateway image, by the reason given there.
GATEWAY_LEFT_OUT = {
    "cyclopts", "rich-rst", "docstring-parser", "pyperclip", "griffelib", "authlib",
    "keyring", "secretstorage", "jeepney", "jaraco-classes", "jaraco-context", "jaraco-functools",
    "more-itertools", "backports-tarfile", "importlib-metadata", "zipp", "lazy-importer",
    "aiofile", "caio", "openapi-pydantic", "jsonschema-path", "pathable", "email-validator",
    "dnspython", "watchfiles", "websockets", "pygments", "markdown-it-py", "mdurl", "pycparser",
}  # fmt: skip


def lock_pins(lock: Path) -> dict[str, str]:
    pins = re.findall(r"^([a-z0-9][a-z0-9._-]*)==(\S+) \\$", lock.read_text(), re.M)
    return dict(pins)


def gateway_final_stage() -> str:
    dockerfile = GATEWAY_DOCKERFILE.read_text()
    return dockerfile[dockerfile.rindex("\nFROM ") :]


@pytest.mark.parametrize(
    ("image", "packages", "lock"),
    [
        ("gateway", ("gateway", "servicebase"), "gateway.txt"),
        ("falco-responder", ("responder", "servicebase"), "responder.txt"),
    ],
)
def test_python_service_context_is_wheels_and_its_packages(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    image: str,
    packages: tuple[str, ...],
    lock: str,
) -> None:
    context, files = staged(monkeypatch, tmp_path, image)
    code = {name for name in files if name.startswith("src/")}
    assert files - code == {
        "Dockerfile",
        "assemble_rootfs.py",
        "install_python_root.sh",
        "requirements.txt",
        "wheels/pkg-1.0-py3-none-any.whl",
        "healthcheck",
    }
    modules = {
        f"src/{p.relative_to(REPO).as_posix()}"
        for package in packages
        for p in (REPO / package).rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert {f"src/{package}/__init__.py" for package in packages} <= modules <= code
    assert all(name.split("/")[1] in packages and "__pycache__" not in name for name in code)
    assert (context / "requirements.txt").read_bytes() == (REPO / "locks" / lock).read_bytes()
    for name in code:
        assert (context / name).read_bytes() == (REPO / name.removeprefix("src/")).read_bytes()


def test_staged_sources_leave_caches_bytecode_and_hidden_files_behind(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    package = root / "pkg"
    (package / "sub" / "__pycache__").mkdir(parents=True)
    (package / ".mypy_cache").mkdir()
    (package / "__init__.py").write_text("")
    (package / "sub" / "mod.py").write_text("X = 1\n")
    (package / "sub" / "data.json").write_text("{}")
    (package / "sub" / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"pyc")
    (package / "stray.pyc").write_bytes(b"pyc")
    (package / ".mypy_cache" / "x.json").write_text("{}")
    (package / ".env").write_text("TOKEN=leak\n")
    assert images.source_files(root, "pkg") == {
        "src/pkg/__init__.py": package / "__init__.py",
        "src/pkg/sub/data.json": package / "sub" / "data.json",
        "src/pkg/sub/mod.py": package / "sub" / "mod.py",
    }
    with pytest.raises(CommandError, match="not a folder"):
        images.source_files(root, "missing")


def test_a_source_file_deleted_from_the_repository_leaves_the_staged_context(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake_inputs(monkeypatch, tmp_path)
    settings = Settings(_env_file=None, build_dir=tmp_path / "build")  # type: ignore[call-arg]
    context = images.stage_context(settings, recipe("gateway"))
    gone = context / "src" / "gateway" / "removed_module.py"
    gone.write_text("IMPORTED = True\n")
    (context / "src" / "gateway" / "__pycache__").mkdir()
    (context / "src" / "gateway" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"pyc")
    images.stage_context(settings, recipe("gateway"))
    assert not gone.exists()
    assert not list(context.rglob("*.pyc"))


def test_gateway_image_is_from_scratch_non_root_with_the_gateway_as_entry_point() -> None:
    final = gateway_final_stage()
    assert final.startswith("\nFROM scratch\nCOPY --from=build /rootfs/ /\n")
    assert "\nUSER 10004:10004\n" in final
    assert "\nWORKDIR /app\n" in final
    assert final.rstrip().endswith('ENTRYPOINT ["/usr/bin/python3", "-m", "gateway"]')
    dockerfile = GATEWAY_DOCKERFILE.read_text()
    # IMG-02: installed only from the staged, hash-checked wheels.
    installer = (REPO / "images" / "common" / "install_python_root.sh").read_text()
    assert "install_python_root.sh" in dockerfile
    assert "--no-index" in installer and "--require-hashes" in installer
    assert "COPY src/gateway/ /rootfs/app/gateway/" in dockerfile
    assert (
        "ARG APP_UID=10004" in dockerfile
        and 'install_python_root.sh "$APP_UID" gateway' in dockerfile
    )


def test_gateway_image_environment() -> None:
    env = dict(re.findall(r"\b([A-Z][A-Z0-9_]+)=(\S+)", gateway_final_stage().split("ENV", 1)[1]))
    assert env == {
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        # rich tracebacks import pygments, which the lock leaves out
        "FASTMCP_ENABLE_RICH_TRACEBACKS": "false",
        # no request to PyPI at start (and no version cache written under FastMCP's home)
        "FASTMCP_CHECK_FOR_UPDATES": "off",
    }


def test_gateway_lock_is_hashed_and_leaves_out_what_the_gateway_never_imports() -> None:
    text = GATEWAY_LOCK.read_text()
    pins = lock_pins(GATEWAY_LOCK)
    assert len(pins) == len(re.findall(r"^[a-z0-9]", text, re.M))  # each pin ends in hashes
    assert text.count("--hash=sha256:") >= len(pins)
    assert pins["fastmcp-slim"] == "4.1.2"
    # imported at startup, or the proxy path cannot run without them
    for needed in ("mcp", "uvicorn", "starlette", "pydantic-settings", "cryptography", "cffi",
                   "beartype", "pydantic-core", "pyyaml", "joserfc", "pyjwt", "rich"):  # fmt: skip
        assert needed in pins, needed
    assert not GATEWAY_LEFT_OUT & set(pins)
    script = (REPO / "scripts" / "lock").read_text()
    for name in GATEWAY_LEFT_OUT:
        assert re.search(rf"^gw_drop\+?=\(.*\b{re.escape(name)}\b", script, re.M), name


def test_dev_venv_has_the_gateway_image_libraries_at_the_same_versions() -> None:
    # Unit tests run the gateway in-process: the same libraries as the image, at the same pins.
    dev = lock_pins(REPO / "locks" / "dev.txt")
    assert {name: dev.get(name) for name in lock_pins(GATEWAY_LOCK)} == lock_pins(GATEWAY_LOCK)
    assert "hypothesis" in dev
    pin = "fastmcp-slim[server,client]==4.1.2"
    for source in ("dev.in", "gateway.in"):
        assert pin in (REPO / "locks" / source).read_text().splitlines()


# --- Debian package locks


def test_deb_lock_pins_squid_and_its_dependencies() -> None:
    entries = debs.parse_lock(DEB_LOCK)
    assert debs.lock_packages(DEB_LOCK) == ["squid"]
    names = {e.package for e in entries}
    assert {"squid", "squid-common", "squid-langpack", "libecap3"} <= names
    assert "libc6" not in names  # in the base image, so not pinned here
    for e in entries:
        assert e.filename.startswith(f"{e.package}_") and e.filename.endswith(f"_{e.arch}.deb")


def test_unchanged_deb_lock_is_not_fetched_again(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, build_dir=tmp_path / "build")  # type: ignore[call-arg]
    target = debs.debs_dir(settings, DEB_LOCK)
    target.mkdir(parents=True)
    (target / ".lock-sha256").write_text(hashlib.sha256(DEB_LOCK.read_bytes()).hexdigest())
    # A matching stamp means no container and no apt at all.
    assert debs.fetch_debs(settings, DEB_LOCK) == target


def write_deb_lock(tmp_path: Path, content: bytes) -> tuple[Path, list[debs.LockedDeb]]:
    lock = tmp_path / "x.debs"
    digest = hashlib.sha256(content).hexdigest()
    lock.write_text(f"# packages: foo\nfoo 1.0-1 amd64 {digest} foo_1.0-1_amd64.deb\n")
    return lock, debs.parse_lock(lock)


def test_deb_with_another_sha256_is_refused_by_name(tmp_path: Path) -> None:
    lock, entries = write_deb_lock(tmp_path, b"the real package")
    folder = tmp_path / "debs"
    folder.mkdir()
    (folder / "foo_1.0-1_amd64.deb").write_bytes(b"a tampered package")
    with pytest.raises(CommandError, match=r"foo_1\.0-1_amd64\.deb: sha256 .* does not match"):
        debs.verify_debs(folder, entries, lock)
    (folder / "foo_1.0-1_amd64.deb").write_bytes(b"the real package")
    debs.verify_debs(folder, entries, lock)
    (folder / "bar_2_amd64.deb").write_bytes(b"unpinned")
    with pytest.raises(CommandError, match=r"does not pin: bar_2_amd64\.deb"):
        debs.verify_debs(folder, entries, lock)


def test_malformed_deb_lock_is_refused(tmp_path: Path) -> None:
    lock = tmp_path / "bad.debs"
    for line in (
        "foo 1.0 amd64 nothex foo_1.0_amd64.deb",
        "foo 1.0 amd64 " + "0" * 64 + " ../x.deb",
    ):
        lock.write_text(f"# packages: foo\n{line}\n")
        with pytest.raises(CommandError, match="malformed"):
            debs.parse_lock(lock)


# --- Go tools


def test_healthcheck_go_version_is_pinned_and_its_digest_follows_its_sources(
    tmp_path: Path,
) -> None:
    source = REPO / "tools" / "healthcheck"
    assert gotools.pinned_go_version(source) == (1, 26)
    copy = tmp_path / "healthcheck"
    shutil.copytree(source, copy)
    before = gotools.source_digest(copy)
    assert before == gotools.source_digest(source)
    (copy / "main_test.go").write_text("package main\n")  # tests are not part of the binary
    assert gotools.source_digest(copy) == before
    (copy / "main.go").write_text((copy / "main.go").read_text() + "\n// changed\n")
    assert gotools.source_digest(copy) != before


def test_cached_go_tool_is_reused_without_go(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = Settings(_env_file=None, build_dir=tmp_path / "build")  # type: ignore[call-arg]
    digest = gotools.source_digest(gotools.tool_dir(settings, "healthcheck"))
    cached = tmp_path / "build" / "tools" / "healthcheck" / digest[:16] / "healthcheck"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"\x7fELF")
    monkeypatch.setattr(shutil, "which", lambda *args, **kwargs: None)
    assert gotools.build_go_tool(settings, "healthcheck") == cached
    cached.unlink()
    with pytest.raises(CommandError, match="go is missing"):
        gotools.build_go_tool(settings, "healthcheck")


@pytest.mark.parametrize("name", ["healthcheck", "relay"])
def test_go_tool_passes_vet_and_its_own_tests(name: str) -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]  # its Go cache: fast reruns
    assert name in gotools.go_tools(settings)
    gotools.check_go_tool(settings, name)
