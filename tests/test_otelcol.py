"""The OpenTelemetry Collector: its pinned manifest, its config, its build cache and its binary."""

from __future__ import annotations

import json
import re
import shutil
import socket
import struct
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from stack.build import images, otelcol
from stack.process import CommandError
from stack.settings import Settings
from stack.testdata import CANARY_API_TOKEN, CANARY_BROKERAGE_PASSWORD, CANARY_USER_ID

REPO = Path(__file__).resolve().parent.parent
OTEL = REPO / "otel"
MANIFEST = OTEL / "manifest.yaml"
CONFIG = OTEL / "collector.yaml"
EXPORT = OTEL / "export-otlphttp.yaml"

# The name each module's factory registers: what a config may refer to (`type` or `type/name`).
COMPONENT_TYPES = {
    f"{otelcol.CORE}/receiver/otlpreceiver": "otlp",
    f"{otelcol.CORE}/processor/memorylimiterprocessor": "memory_limiter",
    f"{otelcol.CONTRIB}/processor/redactionprocessor": "redaction",
    f"{otelcol.CORE}/processor/batchprocessor": "batch",
    f"{otelcol.CONTRIB}/exporter/fileexporter": "file",
    f"{otelcol.CORE}/exporter/otlphttpexporter": "otlp_http",
    f"{otelcol.CONTRIB}/extension/healthcheckextension": "health_check",
}
SECTIONS = ("receivers", "processors", "exporters", "extensions")


def settings(tmp_path: Path | None = None) -> Settings:
    if tmp_path is None:
        return Settings(_env_file=None)  # type: ignore[call-arg]  # the real cache
    return Settings(_env_file=None, build_dir=tmp_path / "build")  # type: ignore[call-arg]


def manifest() -> dict[str, Any]:
    return otelcol.load_manifest(MANIFEST)


def config(*paths: Path) -> dict[str, Any]:
    """The collector's config as the collector merges several --config files: maps merged,
    lists replaced by the later file."""

    def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
        merged = dict(base)
        for key, value in over.items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = merge(merged[key], value)
            else:
                merged[key] = value
        return merged

    result: dict[str, Any] = {}
    for path in paths or (CONFIG,):
        result = merge(result, yaml.safe_load(path.read_text()))
    return result


# --- The manifest: exactly the allowed components, one consistent release, pinned by hash


def test_manifest_lists_exactly_the_allowed_components() -> None:
    found = otelcol.components(manifest())
    by_kind: dict[str, set[str]] = {kind: set() for kind in otelcol.ALLOWED_COMPONENTS}
    for c in found:
        by_kind[c.kind].add(c.module)
    assert by_kind == {k: set(v) for k, v in otelcol.ALLOWED_COMPONENTS.items()}
    assert len(found) == sum(len(v) for v in otelcol.ALLOWED_COMPONENTS.values())  # no repeats


def test_manifest_pins_one_collector_release() -> None:
    release = otelcol.core_version(manifest())
    assert re.fullmatch(r"v0\.\d+\.\d+", release)
    found = otelcol.components(manifest())
    providers = {c.version for c in found if c.kind == "providers"}
    assert {c.version for c in found if c.kind != "providers"} == {release}
    assert len(providers) == 1 and next(iter(providers)).startswith("v1.")


def test_go_sum_pins_every_component_module_by_hash() -> None:
    lines = (OTEL / "go.sum").read_text().splitlines()
    pins = {tuple(line.split()[:2]) for line in lines}
    assert all(re.fullmatch(r"\S+ v\S+ h1:[A-Za-z0-9+/]{43}=", line) for line in lines)
    for c in otelcol.components(manifest()):
        assert (c.module, c.version) in pins, f"otel/go.sum lacks {c.module} {c.version}"


@pytest.mark.parametrize(
    ("section", "entry", "message"),
    [
        ("receivers", f"{otelcol.CORE}/receiver/nopreceiver v0.161.0", "holds only"),
        ("exporters", f"{otelcol.CORE}/exporter/debugexporter v0.161.0", "holds only"),
        ("providers", f"{otelcol.CORE}/confmap/provider/httpsprovider v1.67.0", "holds only"),
        ("connectors", f"{otelcol.CORE}/connector/forwardconnector v0.161.0", "holds only"),
        ("receivers", f"{otelcol.CORE}/receiver/otlpreceiver latest", "is not"),
    ],
)
def test_a_component_outside_the_allow_list_or_unpinned_is_refused(
    section: str, entry: str, message: str
) -> None:
    changed = manifest()
    changed[section] = [*(changed.get(section) or []), {"gomod": entry}]
    with pytest.raises(CommandError, match=message):
        otelcol.components(changed)


@pytest.mark.parametrize(
    "change",
    [
        {"replaces": ["a => b"]},
        {"dist": {"name": "otelcol-qcstack", "output_path": "/tmp/elsewhere"}},
        {"dist": {"name": "otelcol-qcstack", "cgo_enabled": True}},
    ],
)
def test_a_manifest_that_steers_the_build_is_refused(
    tmp_path: Path, change: dict[str, Any]
) -> None:
    path = tmp_path / "manifest.yaml"
    path.write_text(yaml.safe_dump({**manifest(), **change}))
    with pytest.raises(CommandError):
        otelcol.load_manifest(path)


# --- The config: only the manifest's components, wired in a safe order


def referenced(cfg: dict[str, Any]) -> dict[str, set[str]]:
    """Every component ID the config defines or names in service, by section."""
    found: dict[str, set[str]] = {s: set(cfg.get(s) or {}) for s in SECTIONS}
    service = cfg.get("service") or {}
    found["extensions"] |= set(service.get("extensions") or [])
    for pipeline in (service.get("pipelines") or {}).values():
        for section in ("receivers", "processors", "exporters"):
            found[section] |= set(pipeline.get(section) or [])
    return found


@pytest.mark.parametrize("paths", [(CONFIG,), (CONFIG, EXPORT)], ids=["default", "export"])
def test_config_names_only_components_the_manifest_builds(paths: tuple[Path, ...]) -> None:
    built = {
        COMPONENT_TYPES[c.module] for c in otelcol.components(manifest()) if c.kind in SECTIONS
    }
    assert set(COMPONENT_TYPES) == {
        m for kind in SECTIONS for m in otelcol.ALLOWED_COMPONENTS[kind]
    }
    cfg = config(*paths)
    for section, ids in referenced(cfg).items():
        for component_id in ids:
            assert component_id.split("/")[0] in built, f"{section}: {component_id}"
            assert component_id in (cfg.get(section) or {}), f"{component_id} is not defined"
    assert set(cfg) <= {*SECTIONS, "service"}  # no connectors


@pytest.mark.parametrize("paths", [(CONFIG,), (CONFIG, EXPORT)], ids=["default", "export"])
def test_every_pipeline_limits_memory_first_and_redacts_before_any_exporter(
    paths: tuple[Path, ...],
) -> None:
    pipelines = config(*paths)["service"]["pipelines"]
    assert set(pipelines) == {"traces"}
    for pipeline in pipelines.values():
        assert pipeline["processors"] == ["memory_limiter", "redaction", "batch"]
        assert "file/traces" in pipeline["exporters"]


def test_export_is_off_by_default_and_only_adds_the_backend() -> None:
    base, export = config(CONFIG), config(CONFIG, EXPORT)
    assert not [e for e in base["exporters"] if e.startswith("otlp_http")]
    assert export["service"]["pipelines"]["traces"]["exporters"] == [
        "file/traces",
        "otlp_http/export",
    ]
    backend = export["exporters"]["otlp_http/export"]
    assert backend["endpoint"] == "${env:QCSTACK_OTEL_EXPORT_ENDPOINT}"
    assert backend["sending_queue"]["enabled"] is True  # a slow backend never holds the file up


def test_receiver_extension_and_telemetry_expose_nothing_more_than_otlp_http() -> None:
    cfg = config()
    protocols = cfg["receivers"]["otlp"]["protocols"]
    assert set(protocols) == {"http"}
    assert protocols["http"]["endpoint"] == "0.0.0.0:4318"
    assert protocols["http"]["include_metadata"] is False  # no request header in the data
    assert cfg["extensions"]["health_check"]["endpoint"].startswith("127.0.0.1:")
    assert cfg["service"]["telemetry"]["metrics"]["level"] == "none"
    assert cfg["exporters"]["file/traces"]["path"].startswith("/var/lib/otelcol/")
    assert cfg["exporters"]["file/traces"]["rotation"]["max_megabytes"] <= 100


def test_redaction_masks_credential_keys_and_values_but_keeps_every_key() -> None:
    """The patterns as Python reads them (RE2, which the collector uses, agrees on these); the
    collector itself runs them in test_built_binary_writes_spans_with_the_canaries_redacted."""
    redaction = config()["processors"]["redaction"]
    assert redaction["allow_all_keys"] is True and redaction["redact_all_types"] is True
    assert redaction["summary"] in ("info", "silent")  # never a list of what held secrets
    keys = [re.compile(p) for p in redaction["blocked_key_patterns"]]
    values = [re.compile(p) for p in redaction["blocked_values"]]
    for key in (
        "http.request.header.authorization",
        "qc.api_token",
        "ib-password",
        "binance-api-secret",
        "x-api-key",
        "apiKey",
        "tradier-access-token",
        "set-cookie",
    ):
        assert any(p.search(key) for p in keys), key
    for key in ("gen_ai.tool.name", "gen_ai.usage.input_tokens", "mcp.session.id", "url.full"):
        assert not any(p.search(key) for p in keys), key
    for value in (
        "Basic OTAwNDE3OmFiYw==",
        "authorization: bearer abc.def.ghi",
        f'{{"ib-password": "{CANARY_BROKERAGE_PASSWORD}"}}',
        json.dumps({"ib-password": f'x"{CANARY_BROKERAGE_PASSWORD}'}),
        str({"binance-api-secret": CANARY_BROKERAGE_PASSWORD}),
        f"login failed, password: {CANARY_BROKERAGE_PASSWORD}",
        f"https://x.example/?token={CANARY_API_TOKEN}",
        f"https://{CANARY_USER_ID}:{CANARY_API_TOKEN}@x.example/",
    ):
        masked = value
        for pattern in values:  # as the processor applies them: in order, each match masked
            masked = pattern.sub("****", masked)
        for secret in (
            "OTAwNDE3OmFiYw==",
            "abc.def.ghi",
            CANARY_BROKERAGE_PASSWORD,
            CANARY_API_TOKEN,
        ):
            assert secret not in masked, value


# --- Settings: the export endpoint


def test_export_endpoint_adds_the_export_config_and_its_variable() -> None:
    assert settings().otel_configs == ("/etc/otelcol/collector.yaml",)
    assert settings().otel_environment() == {}
    on = Settings(_env_file=None, otel_export_endpoint="https://otel.example.com:4318")  # type: ignore[call-arg]
    assert on.otel_configs[-1] == "/etc/otelcol/export-otlphttp.yaml"
    assert on.otel_environment() == {
        "QCSTACK_OTEL_EXPORT_ENDPOINT": "https://otel.example.com:4318"
    }


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://otel.example.com:4318",
        "https://user:pass@otel.example.com",
        "https://10.0.0.5:4318",
        "https://otel.example.com/?key=1",
        "otel.example.com:4318",
    ],
)
def test_export_endpoint_must_be_https_to_a_named_host_without_credentials(endpoint: str) -> None:
    with pytest.raises(ValueError, match="otel_export_endpoint"):
        Settings(_env_file=None, otel_export_endpoint=endpoint)  # type: ignore[call-arg]


# --- The build: cached by its inputs, staged into the image context


def test_build_digest_follows_manifest_go_sum_and_go_version(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    before = otelcol.build_digest(settings(), "go1.26.8")
    assert before == otelcol.build_digest(settings(), "go1.26.8")
    assert before != otelcol.build_digest(settings(), "go1.26.9")
    copy = tmp_path / "otel"
    shutil.copytree(OTEL, copy)
    monkeypatch.setattr(otelcol, "otel_dir", lambda s: copy)
    assert otelcol.build_digest(settings(), "go1.26.8") == before
    for name in ("manifest.yaml", "go.sum", "ocb.sum"):
        original = (copy / name).read_bytes()
        (copy / name).write_bytes(original + b"\n")
        assert otelcol.build_digest(settings(), "go1.26.8") != before, name
        (copy / name).write_bytes(original)


def test_ocb_sum_pins_the_builder_at_the_collector_release() -> None:
    lines = (OTEL / "ocb.sum").read_text().splitlines()
    assert lines[0] == f"{otelcol.OCB_MODULE} {otelcol.core_version(manifest())} " + lines[0][-47:]
    assert all(re.fullmatch(r"\S+ v\S+ h1:[A-Za-z0-9+/]{43}=", line) for line in lines)


def test_ocb_that_does_not_match_its_lock_is_refused_and_removed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    here = settings(tmp_path)
    ocb = tmp_path / "build" / "otelcol" / "ocb" / "v0.161.0" / "builder"
    ocb.parent.mkdir(parents=True)
    ocb.write_bytes(b"\x7fELF")
    pinned = (OTEL / "ocb.sum").read_text()
    monkeypatch.setattr(otelcol, "ocb_modules", lambda go, path: pinned)
    assert otelcol.ensure_ocb(here, "go", "v0.161.0", {}) == ocb
    monkeypatch.setattr(otelcol, "ocb_modules", lambda go, path: pinned.replace("h1:", "h1:X", 1))
    with pytest.raises(CommandError, match="does not match"):
        otelcol.ensure_ocb(here, "go", "v0.161.0", {})
    assert not ocb.exists()  # the next build installs it again rather than trusting it


def test_cached_binary_is_reused_without_fetching_or_compiling(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    here = settings(tmp_path)
    monkeypatch.setattr(otelcol, "find_go", lambda want: "/usr/local/go/bin/go")
    monkeypatch.setattr(otelcol, "go_version", lambda go: "go1.26.8")
    digest = otelcol.build_digest(here, "go1.26.8")
    cached = tmp_path / "build" / "otelcol" / "bin" / digest[:16] / otelcol.BINARY
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"\x7fELF")

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("a cached collector must not be fetched or compiled again")

    monkeypatch.setattr(otelcol, "generate", no_network)
    monkeypatch.setattr(otelcol, "compile_binary", no_network)
    assert otelcol.build_otelcol(here) == cached


def test_collector_image_context_is_the_binary_the_probe_and_the_configs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    binary = tmp_path / otelcol.BINARY
    binary.write_bytes(b"\x7fELF collector")
    probe = tmp_path / "healthcheck"
    probe.write_bytes(b"\x7fELF probe")
    monkeypatch.setattr(images, "build_otelcol", lambda s: binary)
    monkeypatch.setattr(images, "build_go_tool", lambda s, name: probe)
    recipe = next(r for r in images.IMAGES if r.name == "otel-collector")
    context = images.stage_context(settings(tmp_path), recipe)
    staged = {str(p.relative_to(context)) for p in context.rglob("*") if p.is_file()}
    assert staged == {
        "Dockerfile",
        "assemble_rootfs.py",
        "healthcheck",
        otelcol.BINARY,
        "collector.yaml",
        "export-otlphttp.yaml",
    }


def test_collector_image_is_from_scratch_non_root_with_the_collector_as_entry_point() -> None:
    dockerfile = (REPO / "images" / "otel-collector" / "Dockerfile").read_text()
    final = dockerfile[dockerfile.rindex("\nFROM ") :]
    assert final.startswith("\nFROM scratch\n")
    assert "USER 10006:10006" in final
    assert 'ENTRYPOINT ["/usr/local/bin/otelcol-qcstack"]' in final
    assert 'CMD ["--config=/etc/otelcol/collector.yaml"]' in final
    assert 'CMD ["/usr/local/bin/healthcheck", "http://127.0.0.1:13133/", "200"]' in final
    assert "validate --config=/rootfs/etc/otelcol/collector.yaml" in dockerfile


# --- The built binary (built once, then from the cache under build/otelcol/)


@pytest.fixture(scope="module")
def binary() -> Path:
    """The collector built from otel/manifest.yaml: a cache hit after the first build (which
    needs Go 1.26 and the Go module proxy, and takes a few minutes)."""
    return otelcol.build_otelcol(settings())


def test_built_binary_holds_exactly_the_manifest_components(binary: Path) -> None:
    listed = otelcol.listed_components(binary)
    assert listed == otelcol.manifest_listing(manifest())
    assert sum(len(modules) for modules in listed.values()) == 9
    otelcol.check_components(binary, manifest())


def test_built_binary_is_static(binary: Path) -> None:
    """A 64-bit ELF executable with no PT_INTERP program header: no dynamic loader, no libc."""
    data = binary.read_bytes()[:65536]
    assert data[:5] == b"\x7fELF\x02"
    (phoff,) = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    types = [struct.unpack_from("<I", data, phoff + i * phentsize)[0] for i in range(phnum)]
    assert types and 3 not in types  # PT_INTERP


@pytest.mark.parametrize("paths", [(CONFIG,), (CONFIG, EXPORT)], ids=["default", "export"])
def test_built_binary_accepts_the_configs(binary: Path, paths: tuple[Path, ...]) -> None:
    result = subprocess.run(
        [binary, "validate", *(f"--config={p}" for p in paths)],
        env={"QCSTACK_OTEL_EXPORT_ENDPOINT": "https://backend.invalid"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-2000:]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def canary_span() -> dict[str, Any]:
    """One OTLP/JSON span whose attributes carry the canaries the way a careless instrumentation
    would: a Basic header, credential-named keys, JSON arguments, a URL, a span event."""
    basic = "Basic OTAwNDE3OmFiY2RlZg=="  # base64("900417:abcdef"), shaped like QuantConnect's

    def attr(key: str, value: Any) -> dict[str, Any]:
        return {"key": key, "value": value}

    attributes = [
        attr("gen_ai.tool.name", {"stringValue": "create_live_algorithm"}),
        attr("http.request.header.authorization", {"stringValue": basic}),
        attr("qc.api_token", {"stringValue": CANARY_API_TOKEN}),
        attr("note", {"stringValue": f"upstream said Authorization: {basic}"}),
        attr(
            "gen_ai.tool.call.arguments",
            {"stringValue": json.dumps({"brokerage": {"ib-password": CANARY_BROKERAGE_PASSWORD}})},
        ),
        attr(
            "gen_ai.tool.call.result",
            {"stringValue": json.dumps({"ib-password": f'x"{CANARY_BROKERAGE_PASSWORD}'})},
        ),
        attr("exception.message", {"stringValue": str({"ib-password": CANARY_API_TOKEN})}),
        attr(
            "brokerage",
            {
                "kvlistValue": {
                    "values": [attr("ib-password", {"stringValue": CANARY_BROKERAGE_PASSWORD})]
                }
            },
        ),
        attr("url.full", {"stringValue": f"https://x.example/api?token={CANARY_API_TOKEN}"}),
    ]
    span = {
        "traceId": "5b8efff798038103d269b633813fc60c",
        "spanId": "eee19b7ec3c1b174",
        "name": "tools/call create_live_algorithm",
        "kind": 1,
        "startTimeUnixNano": "1764000000000000000",
        "endTimeUnixNano": "1764000001000000000",
        "attributes": attributes,
        "events": [
            {
                "timeUnixNano": "1764000000500000000",
                "name": "retry",
                "attributes": [attr("password", {"stringValue": CANARY_BROKERAGE_PASSWORD})],
            }
        ],
    }
    resource = {"attributes": [attr("service.name", {"stringValue": "qcstack-test"})]}
    return {
        "resourceSpans": [
            {"resource": resource, "scopeSpans": [{"scope": {"name": "t"}, "spans": [span]}]}
        ]
    }


def test_built_binary_writes_spans_with_the_canaries_redacted(binary: Path, tmp_path: Path) -> None:
    """The real collector, on loopback ports of its own, with otel/collector.yaml changed only
    in where it listens and writes."""
    port, health = free_port(), free_port()
    text = CONFIG.read_text()
    text = text.replace("0.0.0.0:4318", f"127.0.0.1:{port}")
    text = text.replace("127.0.0.1:13133", f"127.0.0.1:{health}")
    text = text.replace("/var/lib/otelcol/", f"{tmp_path}/")
    assert text.count(str(tmp_path)) == 1 and str(port) in text and str(health) in text
    (tmp_path / "collector.yaml").write_text(text)
    process = subprocess.Popen(
        [binary, f"--config={tmp_path / 'collector.yaml'}"],
        env={},
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "collector.log").open("wb"),
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{health}/", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            assert process.poll() is None, (tmp_path / "collector.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "the collector's health check never answered"
            time.sleep(0.2)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/traces",
            data=json.dumps(canary_span()).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - loopback
            assert answer.status == 200
        output = tmp_path / "traces.jsonl"
        deadline = time.monotonic() + 20
        while not (output.exists() and output.stat().st_size):
            assert time.monotonic() < deadline, "no span reached the file exporter"
            time.sleep(0.2)
    finally:
        process.terminate()
        process.wait(timeout=20)
    written = output.read_text()
    for canary in (CANARY_API_TOKEN, CANARY_BROKERAGE_PASSWORD, "OTAwNDE3OmFiY2RlZg=="):
        assert canary not in written
    span = json.loads(written.splitlines()[0])["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    kept = {a["key"]: a["value"] for a in span["attributes"]}
    assert kept["gen_ai.tool.name"] == {"stringValue": "create_live_algorithm"}
    assert kept["http.request.header.authorization"] == {"stringValue": "****"}
    assert kept["qc.api_token"] == {"stringValue": "****"}
    assert kept["redaction.masked.count"]["intValue"] == "8"


def test_compile_step_has_no_network_and_changes_no_module() -> None:
    env = otelcol.COMPILE_ENVIRONMENT
    assert env["GOPROXY"] == "off" and "-mod=readonly" in env["GOFLAGS"]
    assert env["CGO_ENABLED"] == "0" and env["GOTOOLCHAIN"] == "local"
    fetch = otelcol.fetch_environment(settings(), Path("/nonexistent"))
    assert "GOPROXY" not in fetch  # Go's default proxy, unless the settings name one
    with_proxy = Settings(_env_file=None, go_proxy="https://goproxy.internal.example")  # type: ignore[call-arg]
    assert otelcol.fetch_environment(with_proxy, Path("/x"))["GOPROXY"].endswith(".example")
