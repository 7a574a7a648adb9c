"""A private folder and compose projects for one recording or verification run of qc-mcp."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from stack.compose import ComposeProject
from stack.process import CommandError, run
from stack.seccomp import SeccompError, log
from stack.seccomp.host import HOST_ENVIRONMENT, docker
from stack.seccomp.workload import workload_source
from stack.secrets import write_secret
from stack.settings import Settings
from stack.testdata import CANARY_API_TOKEN, CANARY_USER_ID

RECORD_PROJECT = "qcstack-record"  # every container, network and secret here lives in it
NETWORK = f"{RECORD_PROJECT}_mcp"
SERVICE = "qc-mcp"
CLIENT_UID = 10002  # the MCP client container: not recorded
FAKE_API_UID = 10003  # the proxy + QuantConnect API double: not recorded
CLIENT_CONTAINER = "qcrec-client"
FAKE_API_CONTAINER = "qcrec-api"


@dataclass(frozen=True)
class Stage:
    """The folder (secrets, seccomp profile, certificates, override) and its two projects."""

    settings: Settings
    root: Path

    @property
    def profile_dir(self) -> Path:
        return self.root / "profile"

    @property
    def secrets(self) -> Path:
        return self.root / "secrets"

    @property
    def certs(self) -> Path:
        return self.root / "certs"

    @property
    def override(self) -> Path:
        return self.root / "record-override.json"

    @property
    def image(self) -> str:
        return self.settings.image("qc-mcp")

    def prepare(self, profile_text: str) -> None:
        """Writes the profile qc-mcp runs under, canary secrets, a throwaway CA, the override."""
        os.chmod(self.root, 0o755)  # noqa: S103 -- the API double's uid reads the certificates
        self.profile_dir.mkdir()
        (self.profile_dir / "qc-mcp.json").write_text(profile_text, encoding="utf-8")
        write_secret(self.secrets, "qc_user_id", CANARY_USER_ID)
        write_secret(self.secrets, "qc_api_token", CANARY_API_TOKEN)
        self.certs.mkdir(mode=0o755)
        self._make_certificates()
        # compose interpolates `$` in the file; `$$` is how a literal one reaches python3 -c.
        fake_api = workload_source("fake_api").replace("$", "$$")
        override = {
            "services": {
                SERVICE: {
                    "environment": {
                        "HTTPS_PROXY": f"http://{FAKE_API_CONTAINER}:3128",
                        "SSL_CERT_FILE": "/run/secrets/qcrec_test_ca",
                    },
                    "secrets": ["qc_user_id", "qc_api_token", "qcrec_test_ca"],
                    "depends_on": [FAKE_API_CONTAINER],
                },
                FAKE_API_CONTAINER: {
                    "image": self.image,
                    "container_name": FAKE_API_CONTAINER,
                    "user": f"{FAKE_API_UID}:{FAKE_API_UID}",
                    "entrypoint": ["/usr/bin/python3", "-c", fake_api],
                    "read_only": True,
                    "cap_drop": ["ALL"],
                    "security_opt": ["no-new-privileges:true"],
                    "volumes": [f"{self.certs}:/certs:ro"],
                    "networks": ["mcp"],
                },
            },
            "secrets": {"qcrec_test_ca": {"file": str(self.certs / "ca.pem")}},
        }
        self.override.write_text(json.dumps(override, indent=2), encoding="utf-8")

    def _make_certificates(self) -> None:
        """A throwaway CA and a www.quantconnect.com certificate for the API double."""
        c = self.certs
        (c / "leaf.ext").write_text(
            "subjectAltName=DNS:www.quantconnect.com\nbasicConstraints=CA:FALSE\n"
            "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
            encoding="utf-8",
        )
        openssl_steps: tuple[list[str | Path], ...] = (
            ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-keyout", c / "ca.key", "-out", c / "ca.pem", "-subj", "/CN=qcstack-record test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
            ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", c / "leaf.key",
             "-out", c / "leaf.csr", "-subj", "/CN=www.quantconnect.com"],
            ["x509", "-req", "-in", c / "leaf.csr", "-CA", c / "ca.pem",
             "-CAkey", c / "ca.key", "-CAcreateserial", "-days", "2", "-out", c / "leaf.pem",
             "-extfile", c / "leaf.ext"],
        )  # fmt: skip
        for argv in openssl_steps:
            run(["openssl", *argv], env=HOST_ENVIRONMENT, capture=True)
        for item in c.iterdir():
            item.chmod(0o444)  # test-only material, readable by the API double's uid

    def project(self, *, proxy: bool) -> ComposeProject:
        """compose.yaml as is, or with HTTPS_PROXY to the API double (proxy=True)."""
        return ComposeProject(
            self.settings,
            RECORD_PROJECT,
            self.secrets,
            overrides=(self.override,) if proxy else (),
            seccomp_dir=self.profile_dir,
        )

    def up(self, *, proxy: bool) -> str:
        """Starts the project and returns qc-mcp's container id."""
        project = self.project(proxy=proxy)
        try:
            project.up(wait_timeout=120)
        except CommandError as error:
            raise SeccompError(f"{error}\nlogs:\n{project.logs()}") from error
        container = project.run("ps", "-q", SERVICE, capture=True).strip()
        if not container:
            raise SeccompError("qc-mcp did not start")
        return container

    def stop(self, container: str, *, proxy: bool) -> None:
        """Stops qc-mcp the way Docker does (SIGTERM to docker-init), checks how it ended, downs."""
        project = self.project(proxy=proxy)
        project.run("stop", "--timeout", "15", SERVICE)
        state = json.loads(docker("inspect", "-f", "{{json .State}}", container).stdout)
        log(f"qc-mcp stopped: exit code {state['ExitCode']}, OOMKilled {state['OOMKilled']}")
        if state["OOMKilled"] or state["ExitCode"] not in (0, 143):
            raise SeccompError(f"qc-mcp did not stop cleanly: {state}")
        project.down()

    def remove_leftovers(self) -> None:
        """Starts clean: our compose project down, our named containers gone (only ours)."""
        self.project(proxy=True).down()
        for name in (CLIENT_CONTAINER, FAKE_API_CONTAINER):
            if docker("ps", "-aq", "--filter", f"name=^{name}$").stdout.strip():
                docker("rm", "-f", name)
