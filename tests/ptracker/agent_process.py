"""A real `ptracker agent --listen` process (pull mode) and what its tests share."""

import ipaddress
import json
import os
import signal
import ssl
import subprocess
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import agent_command, free_port, wait_until  # noqa: F401 (shared)

TOKEN = "pta_test-token"


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that is its own CA, and its key: (cert, key) files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ptracker test agent")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "agent.crt", directory / "agent.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def call(
    url: str, token: str | None = TOKEN, body: dict | None = None, cafile: Path | None = None
) -> tuple[int, dict]:
    """(status, JSON answer) of a GET, or of a POST of `body`."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers=headers)
    context = ssl.create_default_context(cafile=cafile) if cafile else None
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


class ListeningAgent:
    """`ptracker agent --listen 127.0.0.1:<free port>` without a hub: it only serves,
    sampling every second into `spool`; its log goes to `spool`.log. With `tls`
    (cert, key) it serves https."""

    def __init__(
        self,
        spool: Path,
        name: str = "box-1",
        token: str = TOKEN,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.cafile = tls and tls[0]
        tls_args = ("--tls-cert", str(tls[0]), "--tls-key", str(tls[1])) if tls else ()
        self.log_path = spool.with_suffix(".log")
        with open(self.log_path, "a") as log:
            self.process = subprocess.Popen(
                agent_command(
                    *("--listen", f"127.0.0.1:{self.port}", "--interval", "1", "--name", name),
                    *("--spool-dir", str(spool), "-v", *tls_args),
                ),
                env={**os.environ, "PTRACKER_AGENT_TOKEN": token, "PYTHONUNBUFFERED": "1"},
                stderr=log,
            )
        wait_until(self.serving, timeout=30, what="the agent's API")

    def serving(self) -> bool:
        assert self.process.poll() is None, f"the agent exited:\n{self.log()}"
        try:
            return self.get("/v1/health")[0] == 200
        except OSError:
            return False

    def get(self, path: str, token: str | None = TOKEN) -> tuple[int, dict]:
        return call(self.url + path, token, cafile=self.cafile)

    def post(self, path: str, body: dict, token: str | None = TOKEN) -> tuple[int, dict]:
        return call(self.url + path, token, body, cafile=self.cafile)

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()
