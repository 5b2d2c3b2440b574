"""kafka-python settings that suit threefold: fast group joins, manual commits, durable produce."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence

from threefold.core.errors import ConfigError, ServiceError
from threefold.streaming.connections import KafkaTarget, as_kafka_settings

logger = logging.getLogger(__name__)

# The kafka-python defaults (45 s session, 5 min max poll interval) make a group join take ~25 s
# against tansu; these join in ~3 s. max_poll_interval_ms bounds one batch's processing time.
CONSUMER_DEFAULTS: dict[str, object] = {
    "enable_auto_commit": False,
    "auto_offset_reset": "earliest",
    "session_timeout_ms": 6000,
    "heartbeat_interval_ms": 1500,
    "max_poll_interval_ms": 10000,
    "max_poll_records": 500,
    "request_timeout_ms": 30000,
}

PRODUCER_DEFAULTS: dict[str, object] = {
    "acks": "all",
    "linger_ms": 5,
    "retries": 5,
    "max_in_flight_requests_per_connection": 1,
    "request_timeout_ms": 30000,
    "max_block_ms": 15000,
}


def consumer_config(group_id: str | None, **overrides: object) -> dict[str, object]:
    """KafkaConsumer keyword arguments for `group_id` (no bootstrap_servers unless overridden)."""
    config: dict[str, object] = {"group_id": group_id, **CONSUMER_DEFAULTS, **overrides}
    session = int(config["session_timeout_ms"])  # type: ignore[call-overload]
    heartbeat = int(config["heartbeat_interval_ms"])  # type: ignore[call-overload]
    if heartbeat >= session:
        raise ConfigError(
            f"heartbeat_interval_ms={heartbeat} must be below session_timeout_ms={session} "
            "(Kafka expects about a third of it); lower the heartbeat or raise the session timeout"
        )
    return config


def producer_config(**overrides: object) -> dict[str, object]:
    """KafkaProducer keyword arguments: acks=all, short linger, bounded retries, ordered sends."""
    return {**PRODUCER_DEFAULTS, **overrides}


def ensure_topics(
    kafka: KafkaTarget,
    topics: Sequence[str],
    partitions: int = 1,
    *,
    topic_configs: Mapping[str, str] | None = None,
    timeout_s: float = 15.0,
) -> list[str]:
    """Create the topics that do not exist yet and wait until the broker lists them.

    Returns the names that were created. Existing topics are left as they are (their partition
    count is not changed). `topic_configs` (e.g. {"cleanup.policy": "compact"}) apply to new ones.
    """
    if partitions < 1:
        raise ConfigError(f"partitions must be >= 1, found {partitions}")
    wanted = list(dict.fromkeys(topics))
    if not wanted:
        return []
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    from threefold.streaming.kafka_calls import new_client

    settings = as_kafka_settings(kafka)
    bootstrap = settings.bootstrap_servers
    try:
        admin = new_client(
            KafkaAdminClient, {**settings.client_config(), "client_id": "threefold-admin"}
        )
    except KafkaError as exc:
        raise ServiceError(
            f"cannot reach the Kafka broker at {bootstrap!r} ({exc}); start it or fix "
            "KAFKA_BOOTSTRAP_SERVERS / --bootstrap"
        ) from exc
    try:
        existing = set(admin.list_topics())
        missing = [t for t in wanted if t not in existing]
        if missing:
            new = [
                NewTopic(name, partitions, 1, topic_configs=dict(topic_configs or {}))
                for name in missing
            ]
            try:
                admin.create_topics(new)
            except TopicAlreadyExistsError:
                logger.info("some of %s were created concurrently", missing)
            logger.info("created topics %s with %d partition(s)", missing, partitions)
        deadline = time.monotonic() + timeout_s
        while True:
            listed = set(admin.list_topics())
            if all(t in listed for t in wanted):
                return missing
            if time.monotonic() > deadline:
                raise ServiceError(
                    f"topics {sorted(set(wanted) - listed)} did not appear on {bootstrap} "
                    f"within {timeout_s:.0f} s after creation"
                )
            time.sleep(0.1)
    finally:
        admin.close()
