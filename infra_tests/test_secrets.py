"""SEC controls: the QuantConnect credentials exist only in the secret files and the server."""

from __future__ import annotations

import errno
import json

import pytest

from infra_tests.conftest import (
    Container,
    McpSession,
    double_records,
    gateway_audit,
    stack_container,
)
from infra_tests.dockerhost import DockerHost
from stack.testdata import CANARY_API_TOKEN, TEST_GATEWAY_TOKEN

STACK_SERVICES = ("qc-mcp", "egress-proxy", "gateway", "gateway-relay", "qc-api-double")
KNOWN_SECRETS = {"qc-api-token": CANARY_API_TOKEN, "gateway-token": TEST_GATEWAY_TOKEN}
WRITE_FILE = (
    "import os, sys; open(sys.argv[1], 'w').write(sys.argv[2]); os.chmod(sys.argv[1], 0o444)"
)

SECRET_FILES = ("/run/secrets/qc_user_id", "/run/secrets/qc_api_token")


@pytest.fixture(scope="module")
def canary_planted(docker: DockerHost, qc_mcp: Container) -> None:
    """Leak tests mean something only when the stack runs with the known canary token."""
    result = docker.probe(
        qc_mcp.id,
        "report(planted=open('/run/secrets/qc_api_token').read().strip() == sys.argv[1])",
        CANARY_API_TOKEN,
    )
    if not result.data.get("planted"):
        pytest.skip("the stack under test does not run with the canary token (bin/qcstack test)")


@pytest.mark.control("SEC-01", "config")
def test_credentials_are_mounted_as_secrets_not_set_as_environment(qc_mcp: Container) -> None:
    names = [entry.split("=", 1)[0] for entry in qc_mcp.attrs["Config"]["Env"]]
    assert not [name for name in names if "QUANTCONNECT" in name or "TOKEN" in name]
    assert {m["Destination"] for m in qc_mcp.attrs["Mounts"]} >= set(SECRET_FILES)


@pytest.mark.usefixtures("canary_planted", "tool_calls")
@pytest.mark.control("SEC-01", "behaviour")
@pytest.mark.parametrize("service", STACK_SERVICES)
@pytest.mark.parametrize("secret", sorted(KNOWN_SECRETS))
def test_docker_inspect_does_not_reveal_the_token(
    docker: DockerHost, project: str, service: str, secret: str
) -> None:
    container = docker.container_id(project, service)
    assert KNOWN_SECRETS[secret] not in docker.check("docker inspect %s", container)


@pytest.mark.usefixtures("canary_planted")
@pytest.mark.control("SEC-01", "behaviour")
def test_no_process_environment_holds_the_token(docker: DockerHost, qc_mcp: Container) -> None:
    result = docker.probe(
        qc_mcp.id,
        """
        leaking, read = [], 0
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    environment = open(f"/proc/{entry}/environ", "rb").read()
                except OSError:
                    continue
                read += 1
                if sys.argv[1].encode() in environment:
                    leaking.append(int(entry))
        report(leaking=leaking, read=read)
    """,
        CANARY_API_TOKEN,
    )
    assert result.data["read"] >= 2, "could not read the server's environment to check it"
    assert result.data["leaking"] == []


@pytest.mark.usefixtures("canary_planted", "tool_calls")
@pytest.mark.control("SEC-01", "behaviour")
@pytest.mark.parametrize("service", STACK_SERVICES)
@pytest.mark.parametrize("secret", sorted(KNOWN_SECRETS))
def test_container_logs_do_not_reveal_the_token(
    docker: DockerHost, project: str, service: str, secret: str
) -> None:
    # The proxy's log is its access log: every request, so every tunnel qc-mcp opened.
    logs = docker.run("docker logs %s", docker.container_id(project, service))
    assert KNOWN_SECRETS[secret] not in logs.stdout + logs.stderr


@pytest.mark.usefixtures("canary_planted", "tool_calls")
@pytest.mark.control("SEC-01", "behaviour")
@pytest.mark.parametrize("secret", sorted(KNOWN_SECRETS))
def test_gateway_audit_log_does_not_reveal_the_token(
    docker: DockerHost, project: str, secret: str
) -> None:
    entries = gateway_audit(docker, stack_container(docker, project, "gateway"))
    assert entries, "the audit log is empty: nothing was checked"
    audit = json.dumps(entries)
    assert KNOWN_SECRETS[secret] not in audit


@pytest.mark.usefixtures("canary_planted")
@pytest.mark.control("SEC-01", "behaviour")
def test_token_never_travels_to_the_api_only_its_signature(
    docker: DockerHost, api_double: Container, tool_calls: McpSession
) -> None:
    records = double_records(docker, api_double)
    assert records, "no request reached the API double"
    assert CANARY_API_TOKEN not in json.dumps(records)


@pytest.mark.control("SEC-01", "behaviour")
@pytest.mark.parametrize("secret", ["qc_user_id", "qc_api_token"])
@pytest.mark.parametrize("problem", ["missing", "empty"])
def test_server_refuses_to_start_without_a_credential_and_names_it(
    docker: DockerHost, qc_mcp: Container, secret: str, problem: str
) -> None:
    folder = docker.check("mktemp -d").strip()
    try:
        mounts = []
        for name in ("qc_user_id", "qc_api_token"):
            if name == secret and problem == "missing":
                continue
            path, value = f"{folder}/{name}", "" if name == secret else "1"
            docker.check("python3 -c %s %s %s", WRITE_FILE, path, value)
            mounts.append(f"-v {path}:/run/secrets/{name}:ro")
        result = docker.run(
            f"docker run --rm --read-only --cap-drop ALL --network none {' '.join(mounts)} %s",
            qc_mcp.attrs["Image"],
        )
    finally:
        docker.run("rm -rf %s", folder)
    assert result.rc != 0
    assert f"/run/secrets/{secret}" in result.stderr
    assert ("empty" if problem == "empty" else "cannot read") in result.stderr


@pytest.mark.control("SEC-02", "config")
def test_secret_files_are_owned_by_the_server_user_with_mode_0400(
    docker: DockerHost, qc_mcp: Container
) -> None:
    for mount in qc_mcp.attrs["Mounts"]:
        source = docker.host.file(mount["Source"])
        assert (source.uid, source.mode) == (10001, 0o400), mount["Source"]
        assert mount["RW"] is False


@pytest.mark.control("SEC-02", "behaviour")
@pytest.mark.parametrize("path", SECRET_FILES)
def test_other_user_in_the_container_cannot_read_a_secret(
    docker: DockerHost, qc_mcp: Container, path: str
) -> None:
    error = docker.attempt(qc_mcp.id, "open(sys.argv[1]).read()", path, user="10002:10002")
    assert error == errno.EACCES
