"""Shared fixtures for the hl7 tests: TLS certificates made once per session."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class Certificates:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_cert: Path  # a client certificate signed by a CA the server does not trust
    rogue_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def _issue(name: str, ca: str, cwd: Path, *, server: bool) -> None:
    ext = cwd / f"{name}.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n" if server
                   else "extendedKeyUsage=clientAuth\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
             "-subj", f"/CN={name}", cwd=cwd)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
             "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", str(ext), cwd=cwd)


@pytest.fixture(scope="session")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """A throw-away CA, a server certificate for 127.0.0.1 and client certificates, made with the
    openssl CLI (the `cryptography` package is not installed in this environment)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not found: TLS tests need it to generate test certificates")
    cwd = tmp_path_factory.mktemp("tls")
    for ca in ("ca", "rogue-ca"):
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{ca}.key", "-out", f"{ca}.pem",
                 "-days", "2", "-subj", f"/CN=EHRGate test {ca}", cwd=cwd)
    _issue("server", "ca", cwd, server=True)
    _issue("client", "ca", cwd, server=False)
    _issue("rogue", "rogue-ca", cwd, server=False)
    return Certificates(cwd / "ca.pem", cwd / "server.pem", cwd / "server.key", cwd / "client.pem",
                        cwd / "client.key", cwd / "rogue.pem", cwd / "rogue.key")
