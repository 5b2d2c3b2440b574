"""How every app connects to Redis and Kafka: one settings class each, one client factory each.

Entry points load them with `core.settings.load_settings`:
`load_settings(RedisSettings, "REDIS_")` reads REDIS_URL, REDIS_USERNAME, REDIS_PASSWORD(_FILE),
REDIS_CA_FILE, ...; `load_settings(KafkaSettings, "KAFKA_")` reads KAFKA_BOOTSTRAP_SERVERS,
KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_*, KAFKA_SSL_*. Library code takes the loaded settings.
Passwords come from the variable or from a file (Kubernetes secrets) and are never printed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from threefold.core.errors import ConfigError
from threefold.core.settings import Secret, coerce_fields, safe_url

KAFKA_PROTOCOLS = ("PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL", "SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def _read_secret(value: Secret | None, path: Path | None, setting: str) -> Secret | None:
    if path is None:
        return value
    if value:
        raise ConfigError(f"set {setting} or {setting}_FILE, not both")
    try:
        return Secret(path.read_text(encoding="utf-8").rstrip("\r\n"))
    except OSError as exc:
        raise ConfigError(
            f"{setting}_FILE={str(path)!r} cannot be read ({exc.strerror}); "
            "point it at the mounted secret file"
        ) from None


def _check_files(settings: object, names: tuple[str, ...], prefix: str) -> None:
    for name in names:
        path = getattr(settings, name)
        if path is not None and not path.is_file():
            raise ConfigError(
                f"{prefix}{name.upper()}={str(path)!r} is not a file; "
                "point it at the PEM file (mounted secret or CA bundle)"
            )


@dataclass(frozen=True)
class RedisSettings:
    """A Redis connection: `url` (redis://, rediss:// for TLS, unix://) plus TLS and ACL options.

    `url` None means "not configured": serve commands and the demo start an embedded
    redis-server then; an app factory given None runs degraded (see each app's README).
    """

    url: str | None = None
    username: str | None = None  # ACL user; overrides one in the URL
    password: Secret | None = None
    password_file: Path | None = None
    ca_file: Path | None = None  # CA bundle that signed the server certificate (rediss://)
    cert_file: Path | None = None  # client certificate, when the server asks for one
    key_file: Path | None = None
    check_hostname: bool = True

    def __post_init__(self) -> None:
        coerce_fields(self)
        secret = _read_secret(self.password, self.password_file, "REDIS_PASSWORD")
        object.__setattr__(self, "password", secret)
        _check_files(self, ("ca_file", "cert_file", "key_file"), "REDIS_")
        if (self.cert_file is None) != (self.key_file is None):
            raise ConfigError("REDIS_CERT_FILE and REDIS_KEY_FILE go together; set both or neither")

    @property
    def display_url(self) -> str:
        """The URL with any password masked."""
        return safe_url(self.url)

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for `redis.Redis.from_url(self.url, ...)` beyond the URL."""
        options: dict[str, Any] = {}
        if self.username:
            options["username"] = self.username
        if self.password:
            options["password"] = self.password.reveal()
        if self.url and self.url.startswith("rediss://"):
            options["ssl_cert_reqs"] = "required"
            options["ssl_check_hostname"] = self.check_hostname
            if self.ca_file is not None:
                options["ssl_ca_certs"] = str(self.ca_file)
            if self.cert_file is not None:
                options["ssl_certfile"] = str(self.cert_file)
                options["ssl_keyfile"] = str(self.key_file)
        return options


def redis_client(settings: RedisSettings, **options: Any) -> Any:
    """A redis-py client for `settings` (`options` such as socket_timeout or decode_responses).

    Over rediss:// a failed TLS handshake raises RedisTLSError (a redis ConnectionError and a
    ServiceError) naming the setting to fix, e.g. REDIS_CA_FILE.
    """
    if not settings.url:
        raise ConfigError("no Redis URL is set. Fix: set REDIS_URL (or --redis-url)")
    import redis

    if settings.url.startswith("rediss://"):
        from threefold.streaming.redis_tls import NamedSettingSSLConnection

        options.setdefault("connection_class", NamedSettingSSLConnection)
    return redis.Redis.from_url(settings.url, **settings.client_options(), **options)


@dataclass(frozen=True)
class KafkaSettings:
    """A Kafka connection: bootstrap servers plus the security settings every client shares."""

    bootstrap_servers: str | None = None
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: Secret | None = None
    sasl_password_file: Path | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_check_hostname: bool = True

    def __post_init__(self) -> None:
        coerce_fields(self)
        protocol = self.security_protocol.upper()
        object.__setattr__(self, "security_protocol", protocol)
        if protocol not in KAFKA_PROTOCOLS:
            raise ConfigError(
                f"KAFKA_SECURITY_PROTOCOL must be one of {sorted(KAFKA_PROTOCOLS)}, "
                f"found {self.security_protocol!r}"
            )
        secret = _read_secret(self.sasl_password, self.sasl_password_file, "KAFKA_SASL_PASSWORD")
        object.__setattr__(self, "sasl_password", secret)
        _check_files(self, ("ssl_cafile", "ssl_certfile", "ssl_keyfile"), "KAFKA_")
        if protocol.startswith("SASL"):
            mechanism = (self.sasl_mechanism or "PLAIN").upper()
            object.__setattr__(self, "sasl_mechanism", mechanism)
            if mechanism not in SASL_MECHANISMS:
                raise ConfigError(
                    f"KAFKA_SASL_MECHANISM must be one of {sorted(SASL_MECHANISMS)}, "
                    f"found {self.sasl_mechanism!r}"
                )
            if not self.sasl_username or not self.sasl_password:
                raise ConfigError(
                    f"KAFKA_SECURITY_PROTOCOL={protocol} needs KAFKA_SASL_USERNAME and "
                    "KAFKA_SASL_PASSWORD (or KAFKA_SASL_PASSWORD_FILE)"
                )

    def client_config(self) -> dict[str, Any]:
        """kafka-python keyword arguments shared by producers, consumers and admin clients."""
        if not self.bootstrap_servers:
            raise ConfigError(
                "no Kafka bootstrap servers are set. Fix: set KAFKA_BOOTSTRAP_SERVERS "
                "(or --bootstrap) to host:port[,host:port]"
            )
        config: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.security_protocol,
        }
        if self.security_protocol.endswith("SSL"):
            config["ssl_check_hostname"] = self.ssl_check_hostname
            for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
                path = getattr(self, name)
                if path is not None:
                    config[name] = str(path)
        if self.security_protocol.startswith("SASL"):
            config["sasl_mechanism"] = self.sasl_mechanism
            config["sasl_plain_username"] = self.sasl_username
            config["sasl_plain_password"] = self.sasl_password.reveal()  # type: ignore[union-attr]
        return config


KafkaTarget = KafkaSettings | str


def as_kafka_settings(target: KafkaTarget) -> KafkaSettings:
    """`target` itself, or a PLAINTEXT connection for a bare "host:port[,host:port]" string."""
    if isinstance(target, KafkaSettings):
        return target
    return KafkaSettings(bootstrap_servers=target)
