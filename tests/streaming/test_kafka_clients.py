"""Every kafka-python client the project creates gets all of the KAFKA_* connection settings.

Each client class is replaced by a recorder that keeps the constructor's keyword arguments and
then refuses to connect, so no broker is needed: the check is what reaches kafka-python.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kafka
import pytest
from click.testing import CliRunner

from threefold.core.settings import load_settings
from threefold.streaming.connections import KafkaSettings, RedisSettings

PASSWORD = "kafka-pw-8d1e"


class Refused(Exception):
    """Raised by the recorder instead of connecting."""


@pytest.fixture
def secure_env(tmp_path: Path) -> dict[str, str]:
    """KAFKA_* variables for SASL_SSL SCRAM with a CA, a client cert and a password file."""
    for name in ("ca.pem", "client.pem", "client.key"):
        (tmp_path / name).write_text("-----BEGIN PLACEHOLDER-----\n")
    (tmp_path / "sasl-password").write_text(PASSWORD + "\n")
    return {
        "KAFKA_BOOTSTRAP_SERVERS": "broker-1:9093,broker-2:9093",
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": "alerts",
        "KAFKA_SASL_PASSWORD_FILE": str(tmp_path / "sasl-password"),
        "KAFKA_SSL_CAFILE": str(tmp_path / "ca.pem"),
        "KAFKA_SSL_CERTFILE": str(tmp_path / "client.pem"),
        "KAFKA_SSL_KEYFILE": str(tmp_path / "client.key"),
        "KAFKA_SSL_CHECK_HOSTNAME": "false",
    }


@pytest.fixture
def secure(secure_env: dict[str, str]) -> KafkaSettings:
    return load_settings(KafkaSettings, "KAFKA_", secure_env)


def expected(settings: KafkaSettings) -> dict[str, Any]:
    """Every setting, as kafka-python names it."""
    return {
        "bootstrap_servers": settings.bootstrap_servers,
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "alerts",
        "sasl_plain_password": PASSWORD,
        "ssl_cafile": str(settings.ssl_cafile),
        "ssl_certfile": str(settings.ssl_certfile),
        "ssl_keyfile": str(settings.ssl_keyfile),
        "ssl_check_hostname": False,
    }


def assert_all_settings(calls: list[dict[str, Any]], settings: KafkaSettings) -> None:
    assert calls, "no kafka-python client was created"
    for kwargs in calls:
        assert {k: kwargs.get(k) for k in expected(settings)} == expected(settings)


@pytest.fixture
def record(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[dict[str, Any]]]:
    """Replace kafka.KafkaConsumer/KafkaProducer/KafkaAdminClient, and the consumer class
    streaming.kafka_calls builds with."""
    calls: dict[str, list[dict[str, Any]]] = {}

    def recorder(name: str) -> Any:
        def create(*args: Any, **kwargs: Any) -> Any:
            calls.setdefault(name, []).append(kwargs)
            raise Refused(name)

        return create

    for name in ("KafkaConsumer", "KafkaProducer", "KafkaAdminClient"):
        monkeypatch.setattr(kafka, name, recorder(name))
    import threefold.streaming.kafka_calls as kafka_calls

    monkeypatch.setattr(kafka_calls, "KafkaConsumer", recorder("KafkaConsumer"))
    return calls


def test_the_producer_gets_every_setting(record, secure) -> None:
    from threefold.streaming.producer import JsonProducer

    with pytest.raises(Refused):
        JsonProducer(secure, linger_ms=1).send("t", {"a": 1})
    assert_all_settings(record["KafkaProducer"], secure)
    assert record["KafkaProducer"][0]["linger_ms"] == 1


def test_the_runner_consumer_and_its_producer_get_every_setting(
    record, secure, monkeypatch
) -> None:
    import threefold.streaming.kafka_calls as kafka_calls
    from threefold.streaming.runner import ConsumerRunner

    class Consumer:
        def __init__(self, **kwargs: Any) -> None:
            record.setdefault("KafkaConsumer", []).append(kwargs)

        def subscribe(self, topics: list[str], listener: Any) -> None:
            pass

    monkeypatch.setattr(kafka_calls, "KafkaConsumer", Consumer)
    runner = ConsumerRunner(
        kafka=secure, topics=["in"], group_id="g", processor=object(), dead_letter_topic="dlq"
    )
    runner._open()
    with pytest.raises(Refused):
        runner._producer.send("dlq", {})  # outputs and dead letters
    assert_all_settings(record["KafkaConsumer"], secure)
    assert record["KafkaConsumer"][0]["group_id"] == "g"
    assert_all_settings(record["KafkaProducer"], secure)


def test_ensure_topics_admin_gets_every_setting(record, secure) -> None:
    from threefold.streaming.kafka_config import ensure_topics

    with pytest.raises(Refused):
        ensure_topics(secure, ["t"])
    assert_all_settings(record["KafkaAdminClient"], secure)


def test_stream_replay_reads_kafka_settings_and_bootstrap_overrides(
    record, secure_env, monkeypatch, tmp_path
) -> None:
    from threefold.streaming.cli import stream

    for name, value in secure_env.items():
        monkeypatch.setenv(name, value)
    data = tmp_path / "news.jsonl"
    data.write_text('{"id": "1", "text": "hello"}\n')
    result = CliRunner().invoke(
        stream, ["replay", str(data), "--topic", "t", "--bootstrap", "other:9093"]
    )
    assert result.exit_code != 0
    settings = load_settings(KafkaSettings, "KAFKA_", bootstrap_servers="other:9093")
    assert_all_settings(record["KafkaProducer"], settings)
    assert PASSWORD not in result.output


def test_the_alerts_consumer_gets_every_setting(record, secure, tmp_path) -> None:
    from threefold.apps.alerts.config import AlertsConfig
    from threefold.apps.alerts.consumer import build_runner

    config = AlertsConfig(bootstrap_servers="ignored:9092", redis_prefix="t:")
    runner, processor = build_runner(
        config, RedisSettings(url="redis://127.0.0.1:1/0"), kafka=secure, scorer=object()
    )
    with pytest.raises(Refused):
        runner._open()
    with pytest.raises(Refused):
        processor.publisher.producer.send("t", {})
    assert_all_settings(record["KafkaConsumer"], secure)
    assert_all_settings(record["KafkaProducer"], secure)


def test_alerts_run_loads_kafka_settings_with_the_bootstrap_flag_winning(
    secure_env, monkeypatch
) -> None:
    from threefold.apps.alerts.cli import _config, _kafka

    for name, value in secure_env.items():
        monkeypatch.setenv(name, value)
    settings = _kafka(_config({"bootstrap": "flag:9093"}))
    assert settings.bootstrap_servers == "flag:9093"
    assert settings.security_protocol == "SASL_SSL"
    assert settings.sasl_password.reveal() == PASSWORD
    assert _kafka(_config({})).bootstrap_servers == secure_env["KAFKA_BOOTSTRAP_SERVERS"]


def test_the_demo_alert_watcher_gets_every_setting(record, secure) -> None:
    from threefold.apps.demo.stack import wait_for_alert

    with pytest.raises(Refused):
        wait_for_alert(secure, "alerts", timeout_s=1)
    assert_all_settings(record["KafkaConsumer"], secure)


def test_the_demo_reads_redis_and_kafka_settings_from_the_environment(
    secure_env, monkeypatch, tmp_path
) -> None:
    import threefold.apps.demo.stages as stages
    from threefold.apps.demo.cli import demo

    seen = {}
    monkeypatch.setattr(stages, "run_demo", lambda options: seen.setdefault("o", options) and 0)
    for name, value in secure_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("REDIS_URL", "rediss://cache:6380/0")
    monkeypatch.setenv("REDIS_USERNAME", "demo")
    CliRunner().invoke(demo, ["--cache-dir", str(tmp_path)])
    options = seen["o"]
    assert options.kafka == load_settings(KafkaSettings, "KAFKA_", secure_env)
    assert options.redis.username == "demo"
