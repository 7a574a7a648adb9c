"""The control registry: every isolation control qcstack enforces, and the threat it answers."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

CIS = "cis-docker-1.6.0"

THREATS = MappingProxyType(
    {
        "container-compromise": (
            "Container compromise: code running in the server's container (a malicious dependency, "
            "an exploited bug) widens its foothold (MAESTRO L4, deployment)"
        ),
        "credential-theft": (
            "Credential theft: the QuantConnect API token or brokerage secrets leak from the "
            "deployment (MAESTRO L4; the threat model rates it critical)"
        ),
        "ip-leakage": (
            "Leakage of proprietary trading IP: strategy code and results leave for a destination "
            "other than QuantConnect (MAESTRO L2)"
        ),
        "runaway-behaviour": (
            "Erratic or runaway behaviour that is not contained: resource exhaustion, hung or "
            "crashed server going unnoticed (MAESTRO L5)"
        ),
        "tool-misuse": (
            "Tool misuse: the agent, possibly steered by prompt injection, deploys or changes live "
            "trading, or spends compute, without a person deciding it (MAESTRO L3, the threat "
            "model's primary agentic threat)"
        ),
        "repudiation": (
            "Untraceable actions: nobody can tell afterwards which calls the agent made, which "
            "were approved and by whom, or whether the record was altered (MAESTRO L5/L6)"
        ),
        "supply-chain": (
            "Tampered build inputs: a swapped base image or wheel brings attacker code into the "
            "server's container (MAESTRO L4)"
        ),
        "host-compromise": (
            "Compromise of the VM that runs the stack: whoever gets a shell or root there reads "
            "every credential and controls every container (MAESTRO L4, deployment "
            "infrastructure)"
        ),
    }
)


class Reset:
    """Compose's `!reset` tag: the override removes the key."""


@dataclass(frozen=True)
class Override:
    """Compose's `!override` tag: the override replaces the value instead of merging it."""

    value: Any


RESET = Reset()


@dataclass(frozen=True)
class Control:
    """One control: what it is, what it stops, where it is enforced, how to switch it off."""

    id: str
    title: str
    threat: str
    enforced: str
    stops: str
    refs: tuple[str, ...] = ()
    # A compose override document that switches the control off, for the mutation check; None
    # where the control lives in the image and no override can remove it. Strings may name
    # {canary_token}, {repo_root}, {mutation_dir} and {egress_subnet}.
    disable: dict[str, Any] | None = field(default=None, hash=False)
    # Files the override refers to, written into {mutation_dir} first: name -> content.
    disable_files: dict[str, str] = field(default_factory=dict, hash=False)
    # For a control built into the image: Dockerfile steps that weaken a copy of it, where
    # `tools` is a stage of the Debian base image. The mutation check runs that copy.
    weaken_image: str | None = None
    # For a control of the deployed VM (HOST): a shell script, run as root on the VM, that
    # switches it off. The VM mutation check runs it, then the control's tests, then the
    # deploy, which must switch the control back on.
    disable_on_host: str | None = None
    # For a control that is a Falco rule (DET): its tests take the rules file (--falco-rules),
    # so the mutation check switches it off by cutting its rules out of that file
    # (RuleSet.without_control) instead of changing the stack.
    falco_rules: bool = False


def _cis(*sections: str) -> tuple[str, ...]:
    return tuple(f"{CIS}:{section}" for section in sections)


def _qc_mcp(**service: Any) -> dict[str, Any]:
    """An override of the qc-mcp service alone."""
    return {"services": {"qc-mcp": service}}


HARDENED_SERVICES = (
    "qc-mcp",
    "egress-proxy",
    "gateway",
    "gateway-relay",
    "otel-collector",
    "falco-responder",
)


def _hardened_services(**service: Any) -> dict[str, Any]:
    """The same override of every service of the stack: the control switched off in all."""
    return {"services": dict.fromkeys(HARDENED_SERVICES, service)}


def _gateway(**service: Any) -> dict[str, Any]:
    """An override of the gateway service alone."""
    return {"services": {"gateway": service}}


def _patched_gateway() -> dict[str, Any]:
    """The gateway started through {mutation_dir}/gateway.py, which patches its code first."""
    return {
        **_gateway(
            entrypoint=["/usr/bin/python3", "/mutant/gateway.py"],
            configs=[{"source": "gateway_mutant", "target": "/mutant/gateway.py"}],
        ),
        "configs": {"gateway_mutant": {"file": "{mutation_dir}/gateway.py"}},
    }


_PATCHED_GATEWAY = """\
import sys

sys.path.insert(0, "/app")
{patch}
from gateway.server import main

main()
"""
_WITHOUT_BEARER_GUARD = """\
from gateway import server


async def let_everyone_in(self, scope, receive, send):
    await self.app(scope, receive, send)


server.BearerGuard.__call__ = let_everyone_in
"""
_WITHOUT_TOOL_POLICY = """\
from gateway import calls, fastlane, middleware
from gateway.policy import Decision, Verdict

middleware.listed = fastlane.listed = lambda tool, profile: True
calls.decide = lambda tool, arguments, profile, **_: Decision(Verdict.ALLOW, "mutant")
"""


def _internal_networks(**network: Any) -> dict[str, Any]:
    """An override of every internal network of qc-mcp."""
    return {"networks": {"mcp": network, "egress": network, "telemetry": network}}


def _collector_config(name: str) -> dict[str, Any]:
    """The collector started with {mutation_dir}/<name> as its configuration instead of the
    image's own."""
    return {
        "services": {
            "otel-collector": {
                "command": Override(["--config=/mutant/collector.yaml"]),
                "configs": [{"source": "collector_mutant", "target": "/mutant/collector.yaml"}],
            }
        },
        "configs": {"collector_mutant": {"file": "{mutation_dir}/" + name}},
    }


def _egress_policy() -> dict[str, Any]:
    """An override that gives the proxy another policy.conf than the one settings render."""
    return {"configs": {"egress_policy": {"file": "{mutation_dir}/policy.conf"}}}


_DEPLOY = "stack/deploy/operations.py"
_RULES = "falco/qcstack_rules.yaml"

CONTROLS: tuple[Control, ...] = (
    Control(
        "IMG-01",
        "Base root filesystem built from Debian 12 packages, never pulled",
        "supply-chain",
        "stack/build/base.py (debootstrap, docker import)",
        "a registry-side swap of the base image; builds that fetch code at build time",
        _cis("4.2"),
    ),
    Control(
        "IMG-02",
        "Python wheels and Debian packages installed only as pinned by sha256",
        "supply-chain",
        "locks/*.txt, locks/*.debs; images/*/Dockerfile (pip --require-hashes, sha256sum -c)",
        "a tampered or substituted wheel or package entering an image",
        _cis("4.11"),
    ),
    Control(
        "IMG-03",
        "Runs as a numeric non-root user that owns nothing in the image",
        "container-compromise",
        "images/*/Dockerfile (USER 10001 qc-mcp, 10002 egress-proxy)",
        "root inside the container, and rewriting the server's own code",
        _cis("4.1", "5.23"),
        # Root without capabilities cannot read the 0400 secret files of uid 10001, so the
        # mutant gets back the one capability it needs to start.
        disable=_qc_mcp(user="0:0", cap_add=["DAC_OVERRIDE"]),
    ),
    Control(
        "IMG-04",
        "No shell, package manager or tools the server does not need",
        "container-compromise",
        "images/common/assemble_rootfs.py (FROM scratch image)",
        "an intruder using a shell, package manager or network tool to widen a foothold",
        _cis("4.3"),
        weaken_image="COPY --from=tools /bin/dash /bin/sh",
    ),
    Control(
        "IMG-05",
        "No setuid or setgid files in the image",
        "container-compromise",
        "images/common/assemble_rootfs.py (clears s-bits)",
        "privilege escalation through a setuid binary",
        _cis("4.8"),
        weaken_image="COPY --from=tools /tmp/setuid-dash /usr/bin/setuid-dash",
    ),
    Control(
        "RUN-01",
        "Read-only root filesystem",
        "container-compromise",
        "compose/compose.yaml (read_only)",
        "persisting or replacing code in the container's filesystem",
        _cis("5.12"),
        disable=_hardened_services(read_only=False),
    ),
    Control(
        "RUN-02",
        "The only writable paths are small tmpfs mounts, noexec,nosuid,nodev",
        "container-compromise",
        "compose/compose.yaml (tmpfs; ipc: none, so no Docker /dev/shm)",
        "dropping and running a binary, and filling memory through the scratch space",
        (),
        disable=_qc_mcp(tmpfs=Override(["/tmp:rw,exec,mode=1777"]), ipc="private"),
    ),
    Control(
        "RUN-03",
        "All Linux capabilities dropped",
        "container-compromise",
        "compose/compose.yaml (cap_drop: ALL)",
        "raw sockets, file ownership changes and other privileged kernel operations",
        _cis("5.3", "5.4"),
        disable=_hardened_services(cap_drop=RESET),
    ),
    Control(
        "RUN-04",
        "No new privileges through exec",
        "container-compromise",
        "compose/compose.yaml (security_opt no-new-privileges)",
        "gaining privileges by executing setuid or file-capability binaries",
        _cis("5.25"),
        # Without no-new-privileges runc loads the filter while still privileged and then needs
        # syscalls the allow-list refuses (fstat, capset...), so this mutant runs unconfined.
        disable=_hardened_services(security_opt=Override(["seccomp:unconfined"])),
    ),
    Control(
        "RUN-05",
        "Seccomp allow-list recorded from each service's real workload",
        "container-compromise",
        "seccomp/<service>.json; compose/compose.yaml (security_opt)",
        "kernel attack surface: namespaces, mounts, ptrace, bpf, io_uring, keyrings, modules",
        _cis("5.21"),
        disable=_hardened_services(
            security_opt=Override(["no-new-privileges:true", "seccomp:unconfined"])
        ),
    ),
    Control(
        "RUN-06",
        "Memory limit with no swap beyond it",
        "runaway-behaviour",
        "compose/compose.yaml (mem_limit, memswap_limit)",
        "exhausting the host's memory",
        _cis("5.10"),
        disable=_hardened_services(mem_limit=RESET, memswap_limit=RESET),
    ),
    Control(
        "RUN-07",
        "CPU limit",
        "runaway-behaviour",
        "compose/compose.yaml (cpus)",
        "starving the host and the other containers of CPU",
        _cis("5.11"),
        disable=_hardened_services(cpus=RESET),
    ),
    Control(
        "RUN-08",
        "Process (PIDs) limit",
        "runaway-behaviour",
        "compose/compose.yaml (pids_limit)",
        "a fork bomb exhausting the host's process table",
        _cis("5.28"),
        disable=_hardened_services(pids_limit=RESET),
    ),
    Control(
        "RUN-09",
        "Open-file limit",
        "runaway-behaviour",
        "compose/compose.yaml (ulimits nofile)",
        "exhausting the host's file descriptors",
        _cis("5.18"),
        disable=_hardened_services(ulimits=RESET),
    ),
    Control(
        "RUN-10",
        "An init process as PID 1 reaps orphaned processes",
        "runaway-behaviour",
        "compose/compose.yaml (init)",
        "zombie processes piling up until the process limit is hit",
        (),
        disable=_hardened_services(init=False),
    ),
    Control(
        "RUN-11",
        "Health checked at runtime with a real HTTP request",
        "runaway-behaviour",
        "compose/compose.yaml (healthcheck)",
        "a hung or frozen server going unnoticed",
        _cis("4.6", "5.26"),
        # A check that checks nothing: the weak setting a deployment would really ship.
        disable=_qc_mcp(healthcheck={"test": Override(["CMD", "/usr/bin/python3", "-c", "pass"])}),
    ),
    Control(
        "RUN-12",
        "Log size limits",
        "runaway-behaviour",
        "compose/compose.yaml (logging)",
        "filling the host's disk through the container's output",
        (),
        disable=_hardened_services(logging={"driver": "json-file", "options": RESET}),
    ),
    Control(
        "RUN-13",
        "No host mounts and no Docker socket; only read-only secrets or policy files",
        "container-compromise",
        "compose/compose.yaml (no volumes)",
        "reaching the Docker API or host files to escape the container",
        _cis("5.5", "5.31"),
        disable=_hardened_services(volumes=["/var/run/docker.sock:/var/run/docker.sock"]),
    ),
    Control(
        "SEC-01",
        "QuantConnect credentials reach the server only as secret files, never as environment",
        "credential-theft",
        "compose/compose.yaml (secrets); images/qc-mcp/launch.py",
        "reading the API token from `docker inspect`, process environments or logs",
        (),
        # The launcher refuses QUANTCONNECT_* variables outright, so the mutant leaks the token
        # under another name, as a careless deployment would.
        disable=_qc_mcp(environment={"QC_TOKEN": "{canary_token}"}),
    ),
    Control(
        "SEC-02",
        "Secret files are readable by the server's user alone",
        "credential-theft",
        "stack/secrets.py (0400, uid 10001); compose/compose.yaml (read-only secret mounts)",
        "another process or user in the container or on the host reading the API token",
        (),
    ),
    Control(
        "NET-01",
        "No ports published on the host",
        "container-compromise",
        "compose/compose.yaml (no ports)",
        "anyone on the host or its network calling the unauthenticated server directly",
        _cis("5.8", "5.13"),
        # Docker silently publishes nothing for a container on an internal network alone, so
        # the mutant is also on an ordinary one, as a deployment that publishes a port would be.
        disable={
            **_qc_mcp(ports=["127.0.0.1:8000:8000"]),
            **_internal_networks(internal=False, driver_opts=RESET),
        },
    ),
    Control(
        "NET-02",
        "Attached only to internal networks: no route out, over IPv4 or IPv6",
        "ip-leakage",
        "compose/compose.yaml (networks mcp and egress: internal, no IPv6)",
        "sending strategy code or credentials to any destination outside the stack",
        _cis("5.29"),
        # An ordinary bridge: with NET-03 still on, the missing gateway alone would stop egress.
        disable=_internal_networks(internal=False, driver_opts=RESET),
    ),
    Control(
        "NET-03",
        "The internal networks have no address on the host, so host services are unreachable",
        "credential-theft",
        "compose/compose.yaml (driver_opts inhibit_ipv4)",
        "reaching services on the Docker host (SSH, local APIs) through the bridge's gateway",
        (),
        disable=_internal_networks(driver_opts=RESET),
    ),
    Control(
        "NET-04",
        "The only way out is the egress proxy: CONNECT to allow-listed host:port pairs",
        "ip-leakage",
        "images/egress-proxy/squid.conf; stack/egress.py (policy.conf from settings egress_allow)",
        "tunnelling to any other name, IP address or port, or plain-HTTP requests, through the "
        "one component with a route out",
        (),
        # The rendered policy (so the health check still passes) ending in an allow-all.
        disable=_egress_policy(),
        disable_files={"policy.conf": "{policy_allow_all}"},
    ),
    Control(
        "NET-05",
        "qc-mcp resolves only the stack's own names; its resolver forwards nowhere",
        "ip-leakage",
        "compose/compose.yaml (dns: 127.0.0.1)",
        "DNS tunnelling: data encoded in lookups of an attacker's domain, which any upstream "
        "resolver would forward",
        (),
        # A resolver that answers every name, as an upstream would: a canary of the mutant's own.
        disable={
            "services": {
                "qc-mcp": {"dns": Override(["{dns_canary_address}"])},
                "dns-canary": {
                    "image": "qcstack/qc-mcp:${QCSTACK_IMAGE_TAG:-local}",
                    "entrypoint": ["/usr/bin/python3", "/canary/dns.py"],
                    "user": "10003:10003",
                    "read_only": True,
                    "cap_drop": ["ALL"],
                    "security_opt": ["no-new-privileges:true"],
                    "sysctls": {"net.ipv4.ip_unprivileged_port_start": 53},
                    "configs": [{"source": "dns_canary", "target": "/canary/dns.py"}],
                    "networks": {"egress": {"ipv4_address": "{dns_canary_address}"}},
                },
            },
            "configs": {"dns_canary": {"file": "{repo_root}/infra_tests/canaries/dns.py"}},
        },
    ),
    Control(
        "NET-06",
        "The egress proxy serves the stack's egress network alone: no open proxy",
        "ip-leakage",
        "stack/egress.py (src ACL of the egress subnet); compose/compose.yaml (ipam subnet)",
        "anything on the outside network (or the host) using the proxy as a relay",
        (),
        disable=_egress_policy(),
        disable_files={"policy.conf": "{policy_for_any_client}"},
    ),
    Control(
        "GW-01",
        "The gateway is the only door: bearer token on every MCP request, compared in constant "
        "time",
        "tool-misuse",
        "gateway/server.py (BearerGuard); compose/compose.yaml (gateway_token secret, relay)",
        "anything on the host other than the configured MCP client calling tools",
        (),
        # There is no setting that turns the guard off; the mutant patches it out of the code.
        disable=_patched_gateway(),
        disable_files={"gateway.py": _PATCHED_GATEWAY.format(patch=_WITHOUT_BEARER_GUARD)},
    ),
    Control(
        "GW-02",
        "Tools allowed by profile and classified by name; unknown tools denied",
        "tool-misuse",
        "gateway/tools.py, gateway/policy.py; settings gateway.profile",
        "an agent calling live-trading or other tools its profile does not grant, or tools a "
        "new upstream version adds before anyone classified them",
        (),
        disable=_patched_gateway(),
        disable_files={"gateway.py": _PATCHED_GATEWAY.format(patch=_WITHOUT_TOOL_POLICY)},
    ),
    Control(
        "GW-03",
        "Live trading waits for a person's approval, given by name outside the agent's reach",
        "tool-misuse",
        "gateway/middleware.py (hold); gateway/admin/ (approval pages and API); "
        "compose/compose.yaml (gateway_admins secret)",
        "the agent deploying live trading on its own, or approving its own call with the token "
        "it holds",
        (),
    ),
    Control(
        "GW-04",
        "Brokerage credentials come from the gateway's secret store, never from the model",
        "credential-theft",
        "gateway/brokerages.py; compose/compose.yaml (gateway_brokerages secret)",
        "an agent (or whoever steers it) reading, choosing or echoing brokerage passwords and "
        "API secrets; secrets in audit entries, approval pages or errors",
        (),
    ),
    Control(
        "GW-05",
        "Kill switch: lockdown engaged by an admin or the detection responder, lifted by an "
        "admin alone",
        "tool-misuse",
        "gateway/lockdown.py; gateway/admin/app.py (lockdown API); compose/compose.yaml "
        "(gateway_responder_token secret, state volume)",
        "a runaway or hijacked agent going on trading or spending after an alert",
        (),
    ),
    Control(
        "GW-06",
        "Per-tool rate limits and a compute budget",
        "runaway-behaviour",
        "gateway/limits.py; settings gateway.rate_limits, default_rate_limit, compute_budget",
        "a runaway agent flooding QuantConnect or burning compute credit",
        (),
        disable=_gateway(
            environment={
                "QCSTACK_GATEWAY_RATE_LIMITS": "{}",
                "QCSTACK_GATEWAY_DEFAULT_RATE_LIMIT": "1000000/1",
                "QCSTACK_GATEWAY_COMPUTE_BUDGET": "1000000/1",
            }
        ),
    ),
    Control(
        "GW-07",
        "Hash-chained audit log of every call, on disk before the call proceeds, on a volume",
        "repudiation",
        "servicebase/audit.py (chain, O_APPEND + fsync); compose/compose.yaml (gateway_state)",
        "calls that leave no trace, and edits, deletions or reordering of the record",
        (),
        # The state in a tmpfs instead: the gateway still starts, and loses it all on restart.
        disable=_gateway(
            volumes=Override([]),
            tmpfs=["/var/lib/qcstack-gateway:rw,noexec,nosuid,nodev,uid=10004,gid=10004,mode=0700"],
        ),
    ),
    Control(
        "GW-08",
        "Malformed or hostile requests get clear errors and the gateway stays up",
        "runaway-behaviour",
        "gateway/server.py (body limit, content-type and JSON-RPC checks)",
        "crashing or wedging the one door with bad JSON, huge or deeply nested bodies",
        (),
    ),
    Control(
        "GW-09",
        "Client sessions capped, and ended when idle",
        "runaway-behaviour",
        "gateway/mcpsessions.py; settings gateway.max_sessions, session_idle_seconds",
        "getting the one door killed for memory by opening MCP sessions without end",
        (),
        disable=_gateway(environment={"QCSTACK_GATEWAY_MAX_SESSIONS": "1024"}),
    ),
    Control(
        "OBS-01",
        "qc-mcp traced without changing its code: each MCP request a span in the caller's trace, "
        "its QuantConnect API requests child spans",
        "repudiation",
        "images/qc-mcp/launch.py (OpenTelemetry zero-code instrumentation); locks/qc-mcp.txt; "
        "compose/compose.yaml (OTEL_* of qc-mcp)",
        "agent actions that reach QuantConnect without a record tying them to the call that "
        "caused them",
        (),
        disable=_qc_mcp(environment={"OTEL_TRACES_EXPORTER": "none"}),
    ),
    Control(
        "OBS-02",
        "Exported telemetry redacted: no credential or brokerage secret reaches the trace files",
        "credential-theft",
        "otel/collector.yaml (redaction processor); images/qc-mcp/launch.py (no header capture)",
        "the API token, Basic authorization headers or brokerage passwords leaking through spans "
        "into the trace store or a backend",
        (),
        # The collector's own configuration with the redaction processor taken out of the pipeline.
        disable=_collector_config("collector.yaml"),
        disable_files={"collector.yaml": "{collector_config_without_redaction}"},
    ),
    Control(
        "OBS-03",
        "Telemetry never blocks a tool call: a stopped or frozen collector changes nothing for the "
        "agent",
        "runaway-behaviour",
        "compose/compose.yaml (nothing depends on otel-collector; bounded OTEL_* timeouts and "
        "queue); the SDK's batch span processor",
        "a lost or wedged collector hanging or failing the agent's calls: observability turned "
        "into an outage",
        (),
        # No override makes the SDK export in the caller's thread; the behaviour test stops and
        # freezes the real collector instead.
    ),
    Control(
        "OBS-04",
        "The collector is hardened and isolated: on the internal telemetry network alone, shared "
        "only with the gateway, qc-mcp and the responder",
        "ip-leakage",
        "compose/compose.yaml (otel-collector; network telemetry)",
        "the trace store, which records every call the agent makes, sending it anywhere outside "
        "the stack, or being reached by anything but its three senders",
        (),
        # An ordinary bridge with an address on the host: a route out for the collector.
        disable={"networks": {"telemetry": {"internal": False, "driver_opts": RESET}}},
    ),
    # DET: Falco's runtime rules (falco/qcstack_rules.yaml), the second line behind the
    # prevention controls above: they see what gets past, or what is attempted. No compose
    # override switches them off; the mutation check removes a control's rules from the file
    # (stack.falco.rules.RuleSet.without_control) and expects its scenario tests to go red.
    Control(
        "DET-01",
        "Falco alerts on any process in a qcstack container but the image's own service, its "
        "health check and the runtime's init",
        "container-compromise",
        f'{_RULES} (rule "qcstack unexpected process")',
        "a shell, package manager, network tool or second interpreter started by code that got "
        "into a container going unnoticed",
        (),
        falco_rules=True,
    ),
    Control(
        "DET-02",
        "Falco alerts on writes attempted outside a container's tmpfs or state volume",
        "container-compromise",
        f'{_RULES} (rule "qcstack write outside tmpfs")',
        "probing the read-only root filesystem for a place to drop a payload or change "
        "configuration, unnoticed",
        (),
        falco_rules=True,
    ),
    Control(
        "DET-03",
        "Falco alerts on secret files read by any process but their owner, and on reads of "
        "/proc/*/environ",
        "credential-theft",
        f'{_RULES} (rules "qcstack secret read by another process", "qcstack process '
        'environment read")',
        "a second process in a container lifting the QuantConnect token, the gateway's tokens or "
        "brokerage settings from /run/secrets or a process environment",
        (),
        falco_rules=True,
    ),
    Control(
        "DET-04",
        "Falco alerts on connections off the stack's paths: qc-mcp past the proxy, the proxy off "
        "port 443, the gateway off qc-mcp and the collector",
        "ip-leakage",
        f'{_RULES} (rules "qcstack qc-mcp connection past the proxy", "qcstack proxy '
        'connection off port 443", "qcstack gateway connection off its upstreams")',
        "strategy code or credentials sent, or tried, anywhere but the allow-listed paths",
        (),
        falco_rules=True,
    ),
    Control(
        "DET-05",
        "Falco alerts on denied syscalls attempted in a container (ptrace, unshare, mount, bpf, "
        "setns...), caught by their failure",
        "container-compromise",
        f'{_RULES} (rule "qcstack denied syscall attempted")',
        "container escape and privilege escalation attempts that seccomp stops silently",
        (),
        falco_rules=True,
    ),
    Control(
        "DET-06",
        "Falco alerts on execution from memory (memfd) or from a tmpfs",
        "container-compromise",
        f'{_RULES} (rule "qcstack execution from memory or tmpfs")',
        "fileless payloads and binaries dropped into /tmp or /dev/shm being run",
        (),
        falco_rules=True,
    ),
    Control(
        "DET-07",
        "Falco alerts on a new listening socket in a container",
        "container-compromise",
        f'{_RULES} (rule "qcstack new listening socket")',
        "a bind shell or covert service opened inside the stack's networks",
        (),
        falco_rules=True,
    ),
    Control(
        "DET-08",
        "Falco's alerts answered: each recorded (hash-chained audit log and a span), and "
        "qcstack's alerts at or above a priority engage the gateway's lockdown within a second",
        "runaway-behaviour",
        "responder/ (app.py, lockdown.py); settings responder.lockdown_priority; "
        "compose/compose.yaml (falco-responder, responder_token secret, responder_state)",
        "an intrusion or runaway agent that Falco sees going on trading after the alert; alerts "
        "that leave no record, or a flood of them that buries the record",
        (),
        # The threshold raised out of reach: Falco's Critical alerts are recorded, nothing more.
        disable={
            "services": {
                "falco-responder": {
                    "environment": {"QCSTACK_RESPONDER_LOCKDOWN_PRIORITY": "emergency"}
                }
            }
        },
    ),
    Control(
        "HOST-01",
        "SSH by key only: no passwords, no keyboard-interactive, root by key, no forwarding",
        "host-compromise",
        f"stack/deploy/files.py (sshd_config.d drop-in, checked with sshd -t); {_DEPLOY}",
        "password guessing against the VM's SSH, and SSH tunnels past the firewall",
        (),
        disable_on_host=(
            "printf '%s\\n' 'PasswordAuthentication yes' 'KbdInteractiveAuthentication yes' "
            "'AuthenticationMethods any' 'PermitRootLogin yes' 'AllowTcpForwarding yes' "
            "'X11Forwarding yes' 'AllowAgentForwarding yes' "
            "> /etc/ssh/sshd_config.d/10-qcstack.conf && /usr/sbin/sshd -t && "
            "systemctl reload ssh.service"
        ),
    ),
    Control(
        "HOST-02",
        "Host firewall: inbound SSH only, everything else dropped, over IPv4 and IPv6",
        "host-compromise",
        "stack/deploy/files.py (nftables table qcstack_host, its own systemd unit)",
        "reaching any service on the VM (a debug port, Docker's API on TCP, a forgotten "
        "listener) from its network",
        (),
        disable_on_host="nft delete table inet qcstack_host",
    ),
    Control(
        "HOST-03",
        "Debian security updates installed automatically (unattended-upgrades)",
        "host-compromise",
        "stack/deploy/files.py (apt.conf.d: periodic lists and upgrades, security origin)",
        "known, patched vulnerabilities staying open on the VM between deploys",
        (),
        disable_on_host=(
            "rm -f /etc/apt/apt.conf.d/20auto-upgrades "
            "/etc/apt/apt.conf.d/52qcstack-unattended-upgrades && "
            "systemctl disable --now apt-daily.timer apt-daily-upgrade.timer"
        ),
    ),
    Control(
        "HOST-04",
        "Docker daemon hardening: no-new-privileges by default, live-restore, no inter-container "
        "traffic on the default bridge, no userland proxy, log limits",
        "container-compromise",
        "stack/deploy/files.py (/etc/docker/daemon.json)",
        "a container started without the stack's options gaining privileges or talking to its "
        "neighbours; logs filling the disk; a daemon restart stopping the stack",
        _cis("2.2"),
        disable_on_host=(
            # live-restore stays on, so the stack's containers outlive the restart.
            """printf '{"live-restore": true}\\n' > /etc/docker/daemon.json && """
            "systemctl restart docker.service"
        ),
    ),
    Control(
        "HOST-05",
        "Images arrive from the controller by ID, checked on arrival; the VM builds and pulls "
        "nothing",
        "supply-chain",
        f"{_DEPLOY} (docker save | load, ID check); the stack unit (compose up --pull never)",
        "a registry-side or in-transit swap of an image; the VM running an image nobody built",
        (),
    ),
    Control(
        "HOST-06",
        "Secrets on the VM in a root-only folder, each file 0400 for its service's user, never "
        "printed by the deploy",
        "credential-theft",
        f"{_DEPLOY} (secret_file: upload into the 0700 folder, no diff); stack/deploy/plan.py",
        "other users of the VM reading credentials; credentials in deploy logs or CI output",
        (),
        disable_on_host="chmod 0755 /etc/qcstack/secrets && chmod 0444 /etc/qcstack/secrets/*",
    ),
    Control(
        "HOST-07",
        "Falco runs on the VM with the modern eBPF driver, qcstack's rules and http_output to the "
        "responder",
        "container-compromise",
        f"stack/deploy/falco.py (pinned key and release, falco.yaml rendered for the responder's "
        f"port, checked with falco --dry-run); {_DEPLOY} (falco_on_host)",
        "a compromise of a container, or of the host, going unseen: without Falco on the VM no "
        "DET rule runs and nothing engages the gateway's lockdown",
        (),
        disable_on_host="systemctl disable --now falco-modern-bpf.service",
    ),
)

CONTROLS_BY_ID = MappingProxyType({control.id: control for control in CONTROLS})
