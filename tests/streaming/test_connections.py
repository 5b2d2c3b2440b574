from __future__ import annotations

from pathlib import Path

import pytest

from threefold.core.errors import ConfigError
from threefold.core.settings import load_settings
from threefold.streaming.connections import KafkaSettings, RedisSettings


def test_redis_password_from_a_file_is_used_and_never_printed(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("hunter2\n")
    env = {"REDIS_URL": "rediss://cache:6380/0", "REDIS_PASSWORD_FILE": str(secret)}
    settings = load_settings(RedisSettings, "REDIS_", env)
    options = settings.client_options()
    assert options["password"] == "hunter2"
    assert options["ssl_cert_reqs"] == "required"
    assert "hunter2" not in repr(settings)


def test_redis_tls_files_must_exist(tmp_path: Path) -> None:
    env = {"REDIS_URL": "rediss://cache:6380", "REDIS_CA_FILE": str(tmp_path / "ca.pem")}
    with pytest.raises(ConfigError, match=r"REDIS_CA_FILE=.* is not a file"):
        load_settings(RedisSettings, "REDIS_", env)


def test_kafka_sasl_ssl_reaches_the_client_config(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": "broker:9093",
        "KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": "alerts",
        "KAFKA_SASL_PASSWORD": "pw",
        "KAFKA_SSL_CAFILE": str(ca),
    }
    config = load_settings(KafkaSettings, "KAFKA_", env).client_config()
    assert config == {
        "bootstrap_servers": "broker:9093",
        "security_protocol": "SASL_SSL",
        "ssl_check_hostname": True,
        "ssl_cafile": str(ca),
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "alerts",
        "sasl_plain_password": "pw",
    }


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL must be one of"),
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "needs KAFKA_SASL_USERNAME"),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "GSSAPI"},
            "KAFKA_SASL_MECHANISM must be one of",
        ),
    ],
)
def test_kafka_bad_security_settings_are_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(KafkaSettings, "KAFKA_", env)


def test_kafka_without_bootstrap_says_how_to_fix() -> None:
    with pytest.raises(ConfigError, match="set KAFKA_BOOTSTRAP_SERVERS"):
        KafkaSettings().client_config()
