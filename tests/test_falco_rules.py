"""DET-01..07: qcstack's Falco rules and falco.yaml, checked and evaluated without Falco.

No Falco binary can run on these machines: the rules are checked against Falco 0.44's own JSON
Schemas and qcstack's linter, and each rule's condition is evaluated (stack/falco/evaluate.py,
Falco's operator semantics) on the events of the attack it is there to catch, which must fire
it, and on the events of the stack's own work, which must not. The infra suites run the attacks
themselves (falco/scenarios/).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from stack.controls import CONTROLS, Control
from stack.falco.images import compose_repositories, with_image_lists
from stack.falco.lint import COMPOSE_FILE, LintInputs, lint
from stack.falco.rules import OUR_RULES, STABLE_RULES, RuleSet, RulesFileError, load_rules
from stack.falco.schema import CONFIG_SCHEMA, FALCO_CONFIG, RULE_SCHEMA, schema_errors
from stack.readme import README_PATH, with_rules_table

RULES = load_rules()
DET_CONTROLS = [c for c in CONTROLS if c.id.startswith("DET-") and c.id != "DET-08"]

# --- The events -------------------------------------------------------------------------------

SERVICE_PROCESS: dict[str, dict[str, object]] = {
    "qc-mcp": {
        "proc.name": "python3",
        "proc.exepath": "/usr/bin/python3.11",
        "proc.args": "/app/launch.py",
    },
    "gateway": {
        "proc.name": "python3",
        "proc.exepath": "/usr/bin/python3.11",
        "proc.args": "-m gateway",
    },
    "egress-proxy": {
        "proc.name": "squid",
        "proc.exepath": "/usr/sbin/squid",
        "proc.args": "-N -f /etc/squid/squid.conf",
    },
    "gateway-relay": {
        "proc.name": "relay",
        "proc.exepath": "/usr/local/bin/relay",
        "proc.args": "-listen :8080 -to gateway:8080 -max-conns 128",
    },
    "otel-collector": {
        "proc.name": "otelcol-qcstack",
        "proc.exepath": "/usr/local/bin/otelcol-qcstack",
        "proc.args": "--config=/etc/otelcol/collector.yaml",
    },
}
INTRUDER = {
    "proc.name": "python3",
    "proc.exepath": "/usr/bin/python3.11",
    "proc.args": "-c import os",
    "proc.pname": "runc",
}


def event(
    service: str, fields: dict[str, object], process: dict[str, object] | None = None
) -> dict[str, object]:
    """An event in the service's container, by its service process unless `process` is given."""
    return {
        "container.id": "0123456789ab",
        "container.name": f"qcstack-{service}-1",
        "container.image.repository": f"qcstack/{service}",
        "user.uid": 10001,
        "evt.res": "SUCCESS",
        "evt.failed": False,
        **(
            {**SERVICE_PROCESS[service], "proc.pname": "docker-init"}
            if process is None
            else process
        ),
        **fields,
    }


def failed(errno: str, fields: dict[str, object]) -> dict[str, object]:
    return {**fields, "evt.res": errno, "evt.failed": True}


def exec_of(path: str, args: str = "", parent: str = "python3") -> dict[str, object]:
    return {
        "evt.type": "execve",
        "proc.name": path.rsplit("/", 1)[-1][:15],
        "proc.exepath": path,
        "proc.args": args,
        "proc.pname": parent,
        "evt.arg.filename": path,
    }


def open_of(path: str, write: bool) -> dict[str, object]:
    """A successful open: Falco's fd.* fields of the new descriptor."""
    return {
        "evt.type": "openat",
        "evt.is_open_write": write,
        "evt.is_open_read": not write,
        "fd.typechar": "f",
        "fd.num": 3,
        "fd.name": path,
        "evt.arg.name": path,
    }


def refused_open_of(path: str, write: bool, errno: str) -> dict[str, object]:
    """A refused open: no descriptor; the path asked for is the event's name argument."""
    return failed(
        errno,
        {
            "evt.type": "openat",
            "evt.is_open_write": write,
            "evt.is_open_read": not write,
            "evt.arg.name": path,
        },
    )


def connect_to(address: str, port: int, proto: str = "tcp") -> dict[str, object]:
    return {
        "evt.type": "connect",
        "fd.typechar": "6" if ":" in address else "4",
        "fd.l4proto": proto,
        "fd.sip": address,
        "fd.sport": port,
    }


def datagram_to(address: str, port: int) -> dict[str, object]:
    return {
        **connect_to(address, port, "udp"),
        "evt.type": "sendto",
        "fd.connected": False,
        "fd.name_changed": True,
    }


def listen_on(port: int) -> dict[str, object]:
    return {"evt.type": "listen", "fd.typechar": "4", "fd.l4proto": "tcp", "fd.sport": port}


def syscall(name: str) -> dict[str, object]:
    return failed("EPERM", {"evt.type": name})


# The marks are spelled out: tests/test_controls.py reads control IDs from the source. A rule's
# condition evaluated on its attack's events is configuration; the attack itself is tried in
# infra_tests/test_detection.py.
CONFIG = {
    "DET-01": pytest.mark.control("DET-01", "config"),
    "DET-02": pytest.mark.control("DET-02", "config"),
    "DET-03": pytest.mark.control("DET-03", "config"),
    "DET-04": pytest.mark.control("DET-04", "config"),
    "DET-05": pytest.mark.control("DET-05", "config"),
    "DET-06": pytest.mark.control("DET-06", "config"),
    "DET-07": pytest.mark.control("DET-07", "config"),
}


def fires(rule: str, control: str, attack: str, the_event: dict[str, object]) -> object:
    return pytest.param(rule, the_event, id=f"{control} {attack}", marks=CONFIG[control])


UNEXPECTED = "qcstack unexpected process"
WRITE = "qcstack write outside tmpfs"
OTHER_READER = "qcstack secret read by another process"
ENVIRON = "qcstack process environment read"
QC_MCP_OUT = "qcstack qc-mcp connection past the proxy"
PROXY_OUT = "qcstack proxy connection off port 443"
GATEWAY_OUT = "qcstack gateway connection off its upstreams"
SYSCALL = "qcstack denied syscall attempted"
MEMORY = "qcstack execution from memory or tmpfs"
LISTEN = "qcstack new listening socket"

ATTACKS = [
    fires(UNEXPECTED, "DET-01", "a shell in qc-mcp", event("qc-mcp", exec_of("/bin/sh"), {})),
    fires(
        UNEXPECTED,
        "DET-01",
        "the server's exec of a shell that the image lacks",
        event("qc-mcp", failed("ENOENT", {"evt.type": "execve", "evt.arg.filename": "/bin/sh"})),
    ),
    fires(
        UNEXPECTED,
        "DET-01",
        "a second python in the gateway",
        event("gateway", exec_of("/usr/bin/python3.11", "-c import socket"), {}),
    ),
    fires(
        UNEXPECTED,
        "DET-01",
        "a package manager in the proxy",
        event("egress-proxy", exec_of("/usr/bin/apt-get", "install curl", "squid"), {}),
    ),
    fires(
        UNEXPECTED,
        "DET-01",
        "the audit verifier's command line started by the gateway itself",
        event("gateway", exec_of("/usr/bin/python3.11", "-m gateway.audit verify"), {}),
    ),
    fires(
        UNEXPECTED,
        "DET-01",
        "the gateway's audit verifier exec'd in the responder",
        event(
            "falco-responder",
            exec_of("/usr/bin/python3.11", "-m gateway.audit verify", parent="runc"),
            {},
        ),
    ),
    fires(
        UNEXPECTED,
        "DET-01",
        "the service binary started by something else",
        event("gateway-relay", exec_of("/usr/local/bin/relay", "-to evil:22", "relay"), {}),
    ),
    fires(
        UNEXPECTED,
        "DET-01",
        "the health check binary aimed at another host",
        event(
            "gateway",
            exec_of("/usr/local/bin/healthcheck", "http://203.0.113.7:80/ 200", "runc"),
            {},
        ),
    ),
    fires(
        WRITE,
        "DET-02",
        "code planted in qc-mcp's /app (EROFS)",
        event("qc-mcp", refused_open_of("/app/sitecustomize.py", True, "EROFS")),
    ),
    fires(
        WRITE,
        "DET-02",
        "a write open that succeeds outside tmpfs",
        event("gateway", open_of("/etc/qcstack-dropped", True)),
    ),
    fires(
        WRITE,
        "DET-02",
        "the proxy writing qc-mcp's tmpfs path",
        event("egress-proxy", refused_open_of("/tmp/x", True, "EROFS")),
    ),
    fires(
        OTHER_READER,
        "DET-03",
        "another process reading the API token",
        event("qc-mcp", open_of("/run/secrets/qc_api_token", False), INTRUDER),
    ),
    fires(
        OTHER_READER,
        "DET-03",
        "another uid refused the gateway's brokerages",
        event(
            "gateway",
            refused_open_of("/run/secrets/gateway_brokerages", False, "EACCES"),
            {**INTRUDER, "proc.name": "healthcheck", "proc.exepath": "/usr/local/bin/healthcheck"},
        ),
    ),
    fires(
        ENVIRON,
        "DET-03",
        "the server's environment read",
        event("qc-mcp", open_of("/proc/7/environ", False), INTRUDER),
    ),
    fires(
        ENVIRON,
        "DET-03",
        "a task's environment read, refused",
        event("gateway", refused_open_of("/proc/1/task/1/environ", False, "EACCES")),
    ),
    fires(
        QC_MCP_OUT,
        "DET-04",
        "qc-mcp straight to the internet",
        event("qc-mcp", failed("ENETUNREACH", connect_to("203.0.113.7", 443))),
    ),
    fires(
        QC_MCP_OUT,
        "DET-04",
        "qc-mcp to a host on another port",
        event("qc-mcp", connect_to("10.231.241.9", 8080)),
    ),
    fires(
        QC_MCP_OUT,
        "DET-04",
        "qc-mcp DNS tunnel to an outside resolver",
        event("qc-mcp", datagram_to("198.51.100.53", 53)),
    ),
    fires(
        QC_MCP_OUT, "DET-04", "qc-mcp over IPv6", event("qc-mcp", connect_to("2001:db8::1", 443))
    ),
    fires(
        PROXY_OUT,
        "DET-04",
        "the proxy to port 80",
        event("egress-proxy", connect_to("203.0.113.7", 80)),
    ),
    fires(
        PROXY_OUT, "DET-04", "the proxy to SSH", event("egress-proxy", connect_to("10.0.0.1", 22))
    ),
    fires(
        PROXY_OUT,
        "DET-04",
        "the proxy to an outside resolver",
        event("egress-proxy", datagram_to("198.51.100.53", 53)),
    ),
    fires(
        GATEWAY_OUT,
        "DET-04",
        "the gateway to the internet",
        event("gateway", failed("ENETUNREACH", connect_to("203.0.113.7", 443))),
    ),
    fires(
        GATEWAY_OUT,
        "DET-04",
        "the gateway to the proxy",
        event("gateway", connect_to("10.231.241.2", 3128)),
    ),
    *(
        fires(
            SYSCALL, "DET-05", f"{name} refused in qc-mcp", event("qc-mcp", syscall(name), INTRUDER)
        )
        for name in (
            "ptrace",
            "unshare",
            "setns",
            "mount",
            "bpf",
            "init_module",
            "process_vm_readv",
        )
    ),
    fires(SYSCALL, "DET-05", "mount refused in the gateway", event("gateway", syscall("mount"))),
    fires(
        MEMORY,
        "DET-06",
        "a dropped binary run from /tmp (noexec removed)",
        event("qc-mcp", exec_of("/tmp/dropped"), {}),
    ),
    fires(
        MEMORY,
        "DET-06",
        "a dropped binary refused by noexec",
        event(
            "qc-mcp",
            failed("EACCES", {"evt.type": "execve", "evt.arg.filename": "/tmp/dropped"}),
            INTRUDER,
        ),
    ),
    fires(
        MEMORY,
        "DET-06",
        "a binary run from a memfd",
        event("qc-mcp", {**exec_of("/proc/self/fd/3"), "proc.is_exe_from_memfd": True}, {}),
    ),
    fires(
        MEMORY,
        "DET-06",
        "a binary run from /dev/shm in the proxy",
        event("egress-proxy", exec_of("/dev/shm/x", parent="squid"), {}),
    ),
    fires(
        MEMORY,
        "DET-06",
        "an executable its user could write",
        event("gateway", {**exec_of("/var/lib/qcstack-gateway/x"), "proc.exe_writable": True}, {}),
    ),
    fires(
        MEMORY,
        "DET-06",
        "memfd_create refused by seccomp",
        event(
            "qc-mcp",
            failed("EPERM", {"evt.type": "memfd_create", "evt.arg.name": "payload"}),
            INTRUDER,
        ),
    ),
    fires(LISTEN, "DET-07", "a bind shell in qc-mcp", event("qc-mcp", listen_on(9999), INTRUDER)),
    fires(
        LISTEN, "DET-07", "the gateway listening off its port", event("gateway", listen_on(4444))
    ),
    fires(LISTEN, "DET-07", "the proxy listening off 3128", event("egress-proxy", listen_on(8080))),
]


@pytest.mark.parametrize(("rule", "the_event"), ATTACKS)
def test_rule_fires_on_the_events_of_its_attack(rule: str, the_event: dict[str, object]) -> None:
    assert RULES.matches(rule, the_event), f"{rule!r} stays silent on {the_event}"


def quiet(rule: str, work: str, the_event: dict[str, object]) -> object:
    return pytest.param(rule, the_event, id=f"{rule.removeprefix('qcstack ')}: {work}")


def service_start(service: str) -> dict[str, object]:
    return event(service, {"evt.type": "execve"})


QC_MCP_HEALTHCHECK = {
    "proc.name": "python3",
    "proc.exepath": "/usr/bin/python3.11",
    "proc.args": "-c import http.client as h; c = h.HTTPConnection('127.0.0.1', 8000, timeout=2)",
}
HEALTHCHECK = {
    "proc.name": "healthcheck",
    "proc.exepath": "/usr/local/bin/healthcheck",
    "proc.args": "http://127.0.0.1:8080/healthz 200",
}

NORMAL_WORK = [
    *(
        quiet(UNEXPECTED, f"{service} starts", service_start(service))
        for service in SERVICE_PROCESS
    ),
    *(
        quiet(
            UNEXPECTED,
            f"bin/qcstack audit verify in {service} (exec'd by {parent})",
            event(
                service,
                exec_of("/usr/bin/python3.11", f"-m {module} verify", parent=parent),
                {},
            ),
        )
        for service, module in (
            ("gateway", "gateway.audit"),
            ("falco-responder", "responder.audit"),
        )
        for parent in ("runc", "containerd-shim")
    ),
    quiet(
        UNEXPECTED,
        "qc-mcp's health check",
        event("qc-mcp", {"evt.type": "execve"}, QC_MCP_HEALTHCHECK),
    ),
    *(
        quiet(
            UNEXPECTED,
            f"{service}'s health check",
            event(service, {"evt.type": "execve"}, HEALTHCHECK),
        )
        for service in ("gateway", "egress-proxy", "gateway-relay", "otel-collector")
    ),
    quiet(
        UNEXPECTED,
        "docker-init",
        event("qc-mcp", exec_of("/sbin/docker-init", "-- /usr/bin/python3", "runc"), {}),
    ),
    quiet(
        UNEXPECTED,
        "runc's init",
        event(
            "qc-mcp",
            {
                **exec_of("memfd:runc_cloned:/proc/self/exe", "init", "runc"),
                "proc.name": "runc:[2:INIT]",
            },
            {},
        ),
    ),
    quiet(
        UNEXPECTED,
        "a shell in another project's container",
        {**event("qc-mcp", exec_of("/bin/sh"), {}), "container.image.repository": "nginx"},
    ),
    quiet(
        UNEXPECTED,
        "a shell on the host",
        {**event("qc-mcp", exec_of("/bin/sh"), {}), "container.id": "host"},
    ),
    quiet(WRITE, "qc-mcp's /tmp", event("qc-mcp", open_of("/tmp/tmpabc/x", True))),
    quiet(
        WRITE,
        "the gateway's audit log",
        event("gateway", open_of("/var/lib/qcstack-gateway/audit.jsonl", True)),
    ),
    quiet(
        WRITE,
        "the collector's traces",
        event("otel-collector", open_of("/var/lib/otelcol/traces.jsonl", True)),
    ),
    quiet(
        WRITE,
        "squid's shared memory",
        event("egress-proxy", open_of("/dev/shm/squid-cf__metadata.shm", True)),
    ),
    quiet(WRITE, "/dev/null", event("gateway-relay", open_of("/dev/null", True))),
    quiet(WRITE, "a read of the image", event("qc-mcp", open_of("/app/launch.py", False))),
    quiet(
        OTHER_READER,
        "qc-mcp's server reads its token",
        event("qc-mcp", open_of("/run/secrets/qc_api_token", False)),
    ),
    quiet(
        OTHER_READER,
        "the gateway reads its admins",
        event("gateway", open_of("/run/secrets/gateway_admins", False)),
    ),
    quiet(
        OTHER_READER,
        "a read of /etc/hosts",
        event("qc-mcp", open_of("/etc/hosts", False), INTRUDER),
    ),
    quiet(
        ENVIRON, "a read of /proc/self/status", event("qc-mcp", open_of("/proc/self/status", False))
    ),
    quiet(QC_MCP_OUT, "qc-mcp to the proxy", event("qc-mcp", connect_to("10.231.241.2", 3128))),
    quiet(QC_MCP_OUT, "qc-mcp to the collector", event("qc-mcp", connect_to("172.20.0.5", 4318))),
    quiet(
        QC_MCP_OUT,
        "qc-mcp's names from Docker's DNS",
        event("qc-mcp", datagram_to("127.0.0.11", 53)),
    ),
    quiet(
        QC_MCP_OUT,
        "qc-mcp's health check",
        event("qc-mcp", connect_to("127.0.0.1", 8000), QC_MCP_HEALTHCHECK),
    ),
    quiet(
        QC_MCP_OUT,
        "a unix socket",
        event("qc-mcp", {**connect_to("127.0.0.1", 1), "fd.typechar": "u"}),
    ),
    quiet(
        PROXY_OUT,
        "the proxy to the API's 443",
        event("egress-proxy", connect_to("203.0.113.10", 443)),
    ),
    quiet(PROXY_OUT, "the proxy's names", event("egress-proxy", datagram_to("127.0.0.11", 53))),
    quiet(
        PROXY_OUT,
        "the proxy's health check",
        event("egress-proxy", connect_to("127.0.0.1", 3128), HEALTHCHECK),
    ),
    quiet(GATEWAY_OUT, "the gateway to qc-mcp", event("gateway", connect_to("172.21.0.3", 8000))),
    quiet(
        GATEWAY_OUT,
        "the gateway to the collector",
        event("gateway", connect_to("172.20.0.5", 4318)),
    ),
    quiet(GATEWAY_OUT, "the gateway's names", event("gateway", datagram_to("127.0.0.11", 53))),
    quiet(GATEWAY_OUT, "qc-mcp's own connections", event("qc-mcp", connect_to("203.0.113.7", 443))),
    quiet(SYSCALL, "a refused open", event("qc-mcp", failed("EACCES", {"evt.type": "openat"}))),
    quiet(
        SYSCALL,
        "ptrace refused on the host",
        {**event("qc-mcp", syscall("ptrace")), "container.id": "host"},
    ),
    quiet(MEMORY, "qc-mcp starts", service_start("qc-mcp")),
    quiet(
        MEMORY,
        "the relay's health check",
        event("gateway-relay", {"evt.type": "execve"}, HEALTHCHECK),
    ),
    quiet(
        MEMORY,
        "runc's memfd copy",
        event(
            "qc-mcp",
            {
                **exec_of("memfd:runc_cloned:/proc/self/exe", "init", "runc"),
                "proc.name": "runc",
                "proc.is_exe_from_memfd": True,
            },
            {},
        ),
    ),
    quiet(LISTEN, "qc-mcp on 8000", event("qc-mcp", listen_on(8000))),
    quiet(LISTEN, "the relay on 8080", event("gateway-relay", listen_on(8080))),
    quiet(LISTEN, "the collector's health endpoint", event("otel-collector", listen_on(13133))),
    quiet(LISTEN, "a listen that failed", event("qc-mcp", failed("EADDRINUSE", listen_on(9999)))),
]


@pytest.mark.parametrize(("rule", "the_event"), NORMAL_WORK)
def test_rule_stays_quiet_on_the_stacks_own_work(rule: str, the_event: dict[str, object]) -> None:
    assert not RULES.matches(rule, the_event), f"{rule!r} fires on {the_event}"


# --- The rules file: schema, linter, controls ---------------------------------------------------


@pytest.mark.parametrize(
    "control",
    [pytest.param(c, id=c.id, marks=CONFIG[c.id]) for c in DET_CONTROLS],
)
def test_control_has_its_rules_in_the_rules_file(control: Control) -> None:
    """Its rules are in falco/qcstack_rules.yaml as stack/controls.py names them, with the
    shared decision's priority, tags and tuning macro, and the file passes Falco's schema."""
    rules = RULES.for_control(control.id)
    assert rules, f"no rule is tagged {control.id}"
    for rule in rules:
        assert rule.path == OUR_RULES
        assert f'"{rule.name}"' in control.enforced
        assert rule.enabled
        assert {"qcstack", control.id} <= set(rule.tags)
        warning = control.id in ("DET-02", "DET-07")
        assert rule.priority == ("WARNING" if warning else "CRITICAL")
        assert f"not qcstack_{rule.slug}_tuning" in " ".join(rule.condition.split())
        assert RULES.macros[f"qcstack_{rule.slug}_tuning"].condition == "(never_true)"
    assert schema_errors(OUR_RULES, RULE_SCHEMA) == []


def test_rules_file_and_stable_rules_pass_falcos_rule_schema() -> None:
    assert schema_errors(OUR_RULES, RULE_SCHEMA) == []
    assert schema_errors(STABLE_RULES, RULE_SCHEMA) == []


def test_falco_yaml_passes_falcos_config_schema() -> None:
    assert schema_errors(FALCO_CONFIG, CONFIG_SCHEMA) == []


def test_falco_yaml_loads_stable_then_ours_and_posts_json_to_the_responder() -> None:
    config = yaml.safe_load(FALCO_CONFIG.read_text())
    assert config["rules_files"] == [
        "/etc/falco/falco_rules.yaml",
        "/etc/falco/rules.d/qcstack_rules.yaml",
    ]
    assert config["engine"]["kind"] == "modern_ebpf"
    assert config["json_output"] and config["json_include_tags_property"]
    assert config["http_output"] == {
        **config["http_output"],
        "enabled": True,
        "url": "http://127.0.0.1:8079/alerts",
    }
    assert config["load_plugins"] == ["container"]
    assert config["plugins"][0]["library_path"] == "libcontainer.so"
    assert config["priority"] == "warning"
    assert config["rule_matching"] == "all"
    assert config["config_files"] == [], "drop-ins could change the rules or outputs unseen"


def test_rules_name_every_rule_of_the_shared_decision() -> None:
    ours = {
        rule.name: (rule.control, rule.slug)
        for rule in RULES.rules.values()
        if rule.path == OUR_RULES
    }
    assert ours == {
        UNEXPECTED: ("DET-01", "unexpected_process"),
        WRITE: ("DET-02", "write_outside_tmpfs"),
        OTHER_READER: ("DET-03", "secret_read_by_another_process"),
        ENVIRON: ("DET-03", "process_environment_read"),
        QC_MCP_OUT: ("DET-04", "qc_mcp_connection_past_the_proxy"),
        PROXY_OUT: ("DET-04", "proxy_connection_off_port_443"),
        GATEWAY_OUT: ("DET-04", "gateway_connection_off_its_upstreams"),
        SYSCALL: ("DET-05", "denied_syscall_attempted"),
        MEMORY: ("DET-06", "execution_from_memory_or_tmpfs"),
        LISTEN: ("DET-07", "new_listening_socket"),
    }


@pytest.fixture
def workspace(tmp_path: Path) -> LintInputs:
    """Copies of our rules, falco.yaml and compose, and an empty placeholder scenario per rule
    (the real scenarios are checked by `bin/qcstack falco lint` itself)."""
    scenarios = tmp_path / "scenarios"
    scenarios.mkdir()
    for rule in RULES.rules.values():
        if rule.path == OUR_RULES:
            (scenarios / f"{rule.slug}.py").write_text("")
    for source in (OUR_RULES, FALCO_CONFIG, COMPOSE_FILE):
        shutil.copy(source, tmp_path / source.name)
    return LintInputs(
        rules=tmp_path / OUR_RULES.name,
        config=tmp_path / FALCO_CONFIG.name,
        compose=tmp_path / COMPOSE_FILE.name,
        scenarios=scenarios,
    )


def test_our_rules_and_config_pass_the_linter(workspace: LintInputs) -> None:
    assert [str(problem) for problem in lint(workspace)] == []


def edit(path_of: Callable[[LintInputs], Path], old: str, new: str) -> Callable[[LintInputs], None]:
    def apply(inputs: LintInputs) -> None:
        path = path_of(inputs)
        text = path.read_text()
        assert old in text, f"{old!r} not in {path.name}"
        path.write_text(text.replace(old, new, 1))

    return apply


def rules_edit(old: str, new: str) -> Callable[[LintInputs], None]:
    return edit(lambda inputs: inputs.rules, old, new)


def remove_scenario(inputs: LintInputs) -> None:
    (inputs.scenarios / "new_listening_socket.py").unlink()


@pytest.mark.parametrize(
    ("breakage", "problem"),
    [
        pytest.param(
            rules_edit("or qcstack_runtime_process))", "or qcstack_runtime_proces))"),
            "rule 'qcstack unexpected process': uses macro 'qcstack_runtime_proces', which neither",
            id="missing-macro",
        ),
        pytest.param(
            rules_edit("(proc.pname = docker-init", "(proc.parent_name = docker-init"),
            "macro 'qcstack_service_process': uses unknown field 'proc.parent_name'",
            id="unknown-field",
        ),
        pytest.param(
            rules_edit(
                "res=%evt.res)\n  priority: CRITICAL", "res=%evt.result)\n  priority: CRITICAL"
            ),
            "rule 'qcstack unexpected process': output prints unknown field 'evt.result'",
            id="unknown-output-field",
        ),
        pytest.param(
            rules_edit("pmatch (qcstack_secret_directories)", "pmatch (qcstack_secret_dirs)"),
            "uses list 'qcstack_secret_dirs', which is not defined",
            id="missing-list",
        ),
        pytest.param(
            rules_edit(
                "spawned_process and qcstack_container\n    and (qcstack_exec_failed",
                "spawned_process and and qcstack_container\n    and (qcstack_exec_failed",
            ),
            "rule 'qcstack unexpected process': condition does not parse:",
            id="condition-does-not-parse",
        ),
        pytest.param(
            rules_edit("  priority: WARNING", "  priority: SEVERE"),
            "rule 'qcstack write outside tmpfs': priority 'SEVERE' is not one of Falco's",
            id="bad-priority",
        ),
        pytest.param(
            rules_edit("  priority: WARNING", "  priority: CRITICAL"),
            "rule 'qcstack write outside tmpfs': priority CRITICAL but DET-02's rules are WARNING",
            id="priority-against-the-shared-decision",
        ),
        pytest.param(
            rules_edit("tags: [qcstack, DET-07,", "tags: [DET-07,"),
            "rule 'qcstack new listening socket': tags lack \"qcstack\"",
            id="missing-qcstack-tag",
        ),
        pytest.param(
            rules_edit("tags: [qcstack, DET-07,", "tags: [qcstack,"),
            "rule 'qcstack new listening socket': tags name no DET control ID",
            id="missing-control-tag",
        ),
        pytest.param(
            rules_edit("tags: [qcstack, DET-07,", "tags: [qcstack, DET-17,"),
            "tag DET-17 names no control in stack/controls.py",
            id="unknown-control",
        ),
        pytest.param(
            rules_edit(
                "DET-07, container, network, mitre_command_and_control,",
                "DET-07, container, network,",
            ),
            "rule 'qcstack new listening socket': tags name no MITRE ATT&CK tactic",
            id="missing-mitre-tag",
        ),
        pytest.param(
            rules_edit("    and not qcstack_new_listening_socket_tuning\n", ""),
            "rule 'qcstack new listening socket': neither an exceptions block nor "
            "`and not qcstack_new_listening_socket_tuning`",
            id="missing-tuning-macro",
        ),
        pytest.param(
            rules_edit("Limits: matched on listen()", "Matched on listen()"),
            "rule 'qcstack new listening socket': desc does not say its limits",
            id="desc-without-limits",
        ),
        pytest.param(
            remove_scenario,
            "rule 'qcstack new listening socket': no trigger scenario",
            id="missing-scenario",
        ),
        pytest.param(
            rules_edit("items: [qcstack/qc-mcp]", "items: [qcstack/qc-mcp-server]"),
            "the image lists differ from compose/compose.yaml: "
            "run `bin/qcstack falco --write-rules`",
            id="stale-image-list",
        ),
        pytest.param(
            rules_edit("items: [qcstack/qc-mcp]", "items: [qcstack/qc-mcp-server]"),
            "names image 'qcstack/qc-mcp-server', which compose does not have",
            id="image-compose-lacks",
        ),
        pytest.param(
            edit(
                lambda inputs: inputs.compose,
                "image: qcstack/qc-mcp:",
                "image: qcstack/mcp-server:",
            ),
            "the image lists differ from compose/compose.yaml",
            id="compose-renamed-an-image",
        ),
        pytest.param(
            rules_edit("- rule: qcstack new listening socket", "- rule: new listening socket"),
            "rule 'new listening socket': the name does not start with \"qcstack \"",
            id="rule-name-without-prefix",
        ),
        pytest.param(
            edit(
                lambda inputs: inputs.config,
                "  - /etc/falco/falco_rules.yaml\n  - /etc/falco/rules.d/qcstack_rules.yaml",
                "  - /etc/falco/rules.d/qcstack_rules.yaml\n  - /etc/falco/falco_rules.yaml",
            ),
            "falco.yaml: rules_files must load falco_rules.yaml before qcstack_rules.yaml",
            id="config-rules-out-of-order",
        ),
        pytest.param(
            edit(
                lambda inputs: inputs.config,
                "http_output:\n  enabled: true",
                "http_output:\n  enabled: false",
            ),
            "falco.yaml: http_output must be enabled and post to the responder's /alerts",
            id="config-http-output-off",
        ),
        pytest.param(
            edit(lambda inputs: inputs.config, "priority: warning", "priority: critical"),
            "falco.yaml: priority must be warning",
            id="config-threshold",
        ),
        pytest.param(
            edit(
                lambda inputs: inputs.config,
                "json_output: true",
                "json_output: true\nhttp_outptu: {}",
            ),
            "falco.yaml: (top level): Additional properties are not allowed "
            "('http_outptu' was unexpected)",
            id="config-schema",
        ),
        pytest.param(
            rules_edit("  priority: WARNING", "  priority: WARNING\n  severity: high"),
            "rule 'qcstack write outside tmpfs': Additional properties are not allowed ('severity'",
            id="rules-schema",
        ),
    ],
)
def test_linter_reports_what_is_wrong_and_where(
    workspace: LintInputs, breakage: Callable[[LintInputs], None], problem: str
) -> None:
    breakage(workspace)
    problems = [str(found) for found in lint(workspace)]
    assert any(problem in found for found in problems), problems


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- rule: x\n  condition: [", "not valid YAML"),
        ("rule: x\n", "a rules file is a YAML list"),
        ("- rule: x\n  macro: y\n  condition: a\n", "item 0 is more than one of rule/macro/list"),
        ("- macro: y\n", "'y' has no 'condition'"),
    ],
)
def test_a_broken_rules_file_is_reported_clearly(tmp_path: Path, text: str, message: str) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(text)
    with pytest.raises(RulesFileError, match=message) as error:
        load_rules([STABLE_RULES, broken])
    assert str(broken) in str(error.value)


def test_linter_reports_an_unloadable_rules_file(workspace: LintInputs) -> None:
    workspace.rules.write_text("- rule: x\n  condition: [\n")
    assert any("not valid YAML" in str(problem) for problem in lint(workspace))


# --- Generated parts: image lists, README table, mutation text ------------------------------------


def test_image_lists_are_generated_from_compose() -> None:
    text = OUR_RULES.read_text()
    assert with_image_lists(text, COMPOSE_FILE) == text, "run `bin/qcstack falco --write-rules`"
    for service, repository in compose_repositories(COMPOSE_FILE).items():
        assert RULES.lists[f"qcstack_{service.replace('-', '_')}_images"] == (repository,)
    assert set(RULES.lists["qcstack_images"]) == set(compose_repositories(COMPOSE_FILE).values())


def test_readme_table_of_rules_is_current() -> None:
    readme = README_PATH.read_text(encoding="utf-8")
    assert with_rules_table(readme) == readme, "run `make controls` to regenerate the README tables"


@pytest.mark.parametrize("control", [c.id for c in DET_CONTROLS])
def test_without_control_removes_exactly_that_controls_rules(control: str) -> None:
    text = RULES.without_control(control)
    document = yaml.safe_load(text)
    left = {item["rule"] for item in document if "rule" in item}
    ours = {rule.name for rule in RULES.rules.values() if rule.path == OUR_RULES}
    assert left == ours - {rule.name for rule in RULES.for_control(control)}
    assert len(left) < len(ours)
    # What remains is still a rules file Falco would load: macros, lists and comments intact.
    assert [item for item in document if "rule" not in item] == [
        item for item in yaml.safe_load(OUR_RULES.read_text()) if "rule" not in item
    ]


def test_later_rules_file_overrides_an_earlier_definition(tmp_path: Path) -> None:
    override = tmp_path / "override.yaml"
    override.write_text(
        "- macro: qcstack_unexpected_process_tuning\n  condition: (proc.name = sh)\n"
    )
    ruleset: RuleSet = load_rules([STABLE_RULES, OUR_RULES, override])
    shell = event("qc-mcp", exec_of("/bin/sh"), {"proc.name": "sh"})
    shell["proc.name"] = "sh"
    assert RULES.matches(UNEXPECTED, shell)
    assert not ruleset.matches(UNEXPECTED, shell)


def test_later_rules_file_may_append_to_a_list_and_a_macro(tmp_path: Path) -> None:
    tuning = tmp_path / "tuning.yaml"
    tuning.write_text(
        "- list: qcstack_qc_mcp_writable_paths\n"
        "  items: [/var/cache/qc]\n"
        "  override: {items: append}\n"
        "- macro: qcstack_new_listening_socket_tuning\n"
        "  condition: or fd.sport = 9999\n"
        "  override: {condition: append}\n"
    )
    ruleset = load_rules([STABLE_RULES, OUR_RULES, tuning])
    assert ruleset.lists["qcstack_qc_mcp_writable_paths"] == ("/tmp", "/var/cache/qc")
    assert not ruleset.matches(WRITE, event("qc-mcp", open_of("/var/cache/qc/x", True)))
    assert not ruleset.matches(LISTEN, event("qc-mcp", listen_on(9999), INTRUDER))
    assert ruleset.matches(LISTEN, event("qc-mcp", listen_on(9998), INTRUDER))


def test_changing_an_undefined_item_is_reported(tmp_path: Path) -> None:
    tuning = tmp_path / "tuning.yaml"
    tuning.write_text("- macro: nowhere\n  condition: or a\n  override: {condition: append}\n")
    with pytest.raises(RulesFileError, match="macro 'nowhere' changes one not defined before"):
        load_rules([STABLE_RULES, OUR_RULES, tuning])
