"""A TLS redis-server for tests: certificates made with `openssl` at test time, an ACL user.

`tls_files` (session): a CA, a server certificate it signed (valid for 127.0.0.1 and localhost)
and a second, unrelated CA. `tls_redis` (session): Debian's redis-server listening only on a TLS
port with the default user disabled and the ACL user `tls_redis.username`, whose password is in
`tls_redis.password_file`. Skipped with the reason when openssl or a TLS-capable redis-server
is missing (`make system-deps` installs it).
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from threefold.core.errors import ServiceError
from threefold.streaming.connections import RedisSettings, redis_client
from threefold.streaming.services import ManagedProcess, free_port, wait_until_ready

REDIS_SERVER = "redis-server"
ACL_USER = "threefold-app"


@dataclass(frozen=True)
class TLSFiles:
    ca: Path
    server_cert: Path
    server_key: Path
    other_ca: Path  # a CA that signed nothing the server presents


@dataclass(frozen=True)
class TLSRedis:
    url: str  # rediss://127.0.0.1:<port>/0
    username: str
    password_file: Path
    files: TLSFiles

    def settings(self, **overrides: object) -> RedisSettings:
        """RedisSettings for the ACL user, verifying the server with the right CA."""
        values: dict[str, object] = {
            "url": self.url,
            "username": self.username,
            "password_file": self.password_file,
            "ca_file": self.files.ca,
        }
        values.update(overrides)
        return RedisSettings(**values)  # type: ignore[arg-type]


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_tls_files(directory: Path) -> TLSFiles:
    """A CA, a server certificate for 127.0.0.1/localhost signed by it, and an unrelated CA."""
    for name in ("ca", "other-ca"):
        _openssl(
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", f"/CN=threefold test {name}",
            "-keyout", f"{name}.key", "-out", f"{name}.pem",
            cwd=directory,
        )  # fmt: skip
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
        "-keyout", "server.key", "-out", "server.csr",
        cwd=directory,
    )  # fmt: skip
    (directory / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "san.cnf", "-out", "server.pem",
        cwd=directory,
    )  # fmt: skip
    return TLSFiles(
        ca=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        other_ca=directory / "other-ca.pem",
    )


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (apt-get install openssl)")
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def tls_redis(tls_files: TLSFiles, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSRedis]:
    binary = shutil.which(REDIS_SERVER)
    if binary is None:
        pytest.skip("Debian's redis-server is not installed; `make system-deps` installs it")
    password = secrets.token_urlsafe(16)
    secret_dir = tmp_path_factory.mktemp("redis-secret")
    password_file = secret_dir / "password"
    password_file.write_text(password + "\n")
    config = secret_dir / "redis.conf"  # ACL lines cannot be passed as command-line options
    config.write_text(f"user default off\nuser {ACL_USER} on >{password} ~* &* +@all\n")
    port = free_port()
    argv = [
        binary, str(config), "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
        "--tls-cert-file", str(tls_files.server_cert), "--tls-key-file", str(tls_files.server_key),
        "--tls-ca-cert-file", str(tls_files.ca), "--tls-auth-clients", "no",
        "--save", "", "--appendonly", "no", "--daemonize", "no",
    ]  # fmt: skip
    process = ManagedProcess("redis-tls", argv)
    service = TLSRedis(
        url=f"rediss://127.0.0.1:{port}/0",
        username=ACL_USER,
        password_file=password_file,
        files=tls_files,
    )

    def ready() -> bool:
        client = redis_client(service.settings(), socket_timeout=1)
        try:
            return bool(client.ping())
        finally:
            client.close()

    try:
        wait_until_ready(process, ready, f"TLS redis-server on port {port}")
    except ServiceError:
        log = process.log_tail()
        process.stop()
        if "tls" in log.lower() and ("not" in log.lower() or "unknown" in log.lower()):
            pytest.skip(f"this redis-server was built without TLS: {log}")
        raise
    try:
        yield service
    finally:
        process.stop()
