"""A throwaway test CA and the QuantConnect API double's www.quantconnect.com certificate."""

from __future__ import annotations

import tempfile
from pathlib import Path

from stack.process import SYSTEM_PATH, run
from stack.secrets import write_secret

API_HOST = "www.quantconnect.com"
LEAF_EXTENSIONS = (
    f"subjectAltName=DNS:{API_HOST}\nbasicConstraints=CA:FALSE\n"
    "keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n"
)


def make_test_certificates(secrets_dir: Path) -> None:
    """Writes qc_test_ca, qc_api_double_cert and qc_api_double_key as secrets of the test stack.

    The CA's key is deleted once the one certificate is signed, so nothing else can be made to
    look like QuantConnect to a qc-mcp that trusts this CA, and the CA lives for two days.
    """
    with tempfile.TemporaryDirectory(prefix="qcstack-ca-") as tmp:
        work = Path(tmp)
        (work / "leaf.ext").write_text(LEAF_EXTENSIONS, encoding="utf-8")
        ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
        steps: tuple[list[str | Path], ...] = (
            ["req", "-x509", *ec, "-days", "2", "-keyout", work / "ca.key",
             "-out", work / "ca.pem", "-subj", "/CN=qcstack test CA (tests only)",
             "-addext", "basicConstraints=critical,CA:TRUE,pathlen:0",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
            ["req", *ec, "-keyout", work / "leaf.key", "-out", work / "leaf.csr",
             "-subj", f"/CN={API_HOST}"],
            ["x509", "-req", "-in", work / "leaf.csr", "-CA", work / "ca.pem",
             "-CAkey", work / "ca.key", "-CAcreateserial", "-days", "2",
             "-out", work / "leaf.pem", "-extfile", work / "leaf.ext"],
        )  # fmt: skip
        for argv in steps:
            run(["openssl", *argv], env={"PATH": SYSTEM_PATH}, capture=True)
        for name, source in (
            ("qc_test_ca", "ca.pem"),
            ("qc_api_double_cert", "leaf.pem"),
            ("qc_api_double_key", "leaf.key"),
        ):
            write_secret(secrets_dir, name, (work / source).read_text(encoding="utf-8"))
