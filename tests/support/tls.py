"""Test certificates made with the `openssl` command line: a CA, server and client certificates.

    pki = make_pki(tmp_path)            # CA, server cert for localhost/127.0.0.1, client cert
    other = make_ca(tmp_path / "other") # an unrelated CA, for "wrong CA" cases

Keys are EC P-256 (fast to generate); certificates are valid for a day. The server
certificate carries the subject alternative names it is asked for (DNS and IP entries).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.support.redis_server import require_binary

DAYS = "1"


@dataclass(frozen=True)
class CA:
    cert: str
    key: str


@dataclass(frozen=True)
class KeyPair:
    cert: str
    key: str


@dataclass(frozen=True)
class PKI:
    ca: CA
    server: KeyPair
    client: KeyPair


def _openssl(*args: str, cwd: Path) -> None:
    binary = require_binary("openssl")
    result = subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True,
                            timeout=30, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {result.stderr.strip()}")


def _key(path: Path) -> None:
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-out", str(path), cwd=path.parent)
    os.chmod(path, 0o600)


def make_ca(directory: Path, name: str = "rce-test-ca") -> CA:
    directory.mkdir(parents=True, exist_ok=True)
    key, cert = directory / f"{name}.key", directory / f"{name}.crt"
    _key(key)
    _openssl("req", "-x509", "-new", "-key", str(key), "-sha256", "-days", DAYS,
             "-subj", f"/CN={name}", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-out", str(cert), cwd=directory)
    return CA(cert=str(cert), key=str(key))


def issue(ca: CA, directory: Path, name: str, *, server: bool,
          dns: Sequence[str] = (), ips: Sequence[str] = ()) -> KeyPair:
    """A leaf certificate signed by `ca`, for a server (with SANs) or a client."""
    directory.mkdir(parents=True, exist_ok=True)
    key, csr, cert = (directory / f"{name}.key", directory / f"{name}.csr",
                      directory / f"{name}.crt")
    ext = directory / f"{name}.ext"
    lines = ["basicConstraints=critical,CA:FALSE",
             "keyUsage=critical,digitalSignature,keyEncipherment",
             f"extendedKeyUsage={'serverAuth' if server else 'clientAuth'}"]
    sans = [f"DNS:{host}" for host in dns] + [f"IP:{ip}" for ip in ips]
    if sans:
        lines.append("subjectAltName=" + ",".join(sans))
    ext.write_text("\n".join(lines) + "\n", encoding="utf-8")
    _key(key)
    _openssl("req", "-new", "-key", str(key), "-subj", f"/CN={name}", "-out", str(csr),
             cwd=directory)
    _openssl("x509", "-req", "-in", str(csr), "-CA", ca.cert, "-CAkey", ca.key,
             "-CAcreateserial", "-sha256", "-days", DAYS, "-extfile", str(ext),
             "-out", str(cert), cwd=directory)
    return KeyPair(cert=str(cert), key=str(key))


def make_pki(directory: Path) -> PKI:
    """A CA, a server certificate for localhost and 127.0.0.1, and a client certificate."""
    ca = make_ca(directory)
    server = issue(ca, directory, "server", server=True, dns=("localhost",),
                   ips=("127.0.0.1",))
    client = issue(ca, directory, "client", server=False)
    return PKI(ca=ca, server=server, client=client)
