"""ConsumerRunner under bad input and broker faults, against the real embedded broker."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections.abc import Iterator

import pytest
from kafka import KafkaProducer
from support.runner_threads import RunnerThreads
from support.services import read_topic_records

from threefold.core.errors import ServiceError
from threefold.streaming.kafka_config import ensure_topics
from threefold.streaming.runner import (
    BatchResult,
    ConsumerRunner,
    Message,
    Output,
    ProcessingError,
)
from threefold.streaming.services import KafkaService, start_kafka

from .test_runner import _committed

pytestmark = pytest.mark.integration
SAFETY_S = 90
MAX_TEXT = 10_000
BIG = 2_000_000  # bytes: over Kafka's default 1 MB message limit once dead-lettered


class Echo:
    """Echoes `text` with the input's headers; rejects what is not JSON or longer than MAX_TEXT."""

    def __init__(self, out_topic: str, max_text: int = MAX_TEXT) -> None:
        self.out_topic = out_topic
        self.max_text = max_text

    def process(self, batch: list[Message]) -> BatchResult:
        outputs, failed = [], []
        for m in batch:
            try:
                text = m.json()["text"]
            except ProcessingError as exc:
                failed.append((m, exc.reason))
                continue
            if len(text) > self.max_text:
                failed.append((m, f"text of {len(text)} characters; at most {self.max_text}"))
                continue
            outputs.append(Output(self.out_topic, {"text": text}, headers=m.headers))
        return BatchResult(outputs, failed)


def _runner(
    bootstrap: str,
    src: str,
    out: str,
    dlq: str,
    group: str,
    max_text: int = MAX_TEXT,
    processor: Echo | None = None,
    **kw,
) -> ConsumerRunner:
    return ConsumerRunner(
        kafka=bootstrap,
        topics=[src],
        group_id=group,
        processor=processor or Echo(out, max_text),
        dead_letter_topic=dlq,
        max_batch=8,
        max_wait_ms=50,
        retry_backoff_ms=10,
        **kw,
    )


def _produce(bootstrap: str, topic: str, values: list[bytes], **producer_kw) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, **producer_kw)
    try:
        for i, value in enumerate(values):
            producer.send(
                topic, value=value, key=f"k{i}".encode(), headers=[("trace-id", b"t%d" % i)]
            )
        producer.flush(timeout=30)
    finally:
        producer.close()


def test_oversized_and_binary_messages_are_dead_lettered_and_consuming_goes_on(
    kafka_bootstrap, unique_name, read_topic
) -> None:
    src, out, dlq = unique_name("in"), unique_name("out"), unique_name("dlq")
    ensure_topics(kafka_bootstrap, [src, out, dlq])
    big = json.dumps({"text": "é" * (BIG // 2)}, ensure_ascii=False).encode()
    binary = bytes(range(256)) * 1200  # 300 KB, not UTF-8
    values = [b'{"text": "a"}', big, binary, b'{"text": "b"}']
    _produce(kafka_bootstrap, src, values, max_request_size=3 * BIG)
    runner = _runner(kafka_bootstrap, src, out, dlq, unique_name("g"))

    stats = runner.run(
        stop_when=lambda: runner.stats.processed + runner.stats.dead_lettered >= 4,
        stop_after=SAFETY_S,
    )

    assert (stats.processed, stats.dead_lettered) == (2, 2)
    assert [json.loads(r.value)["text"] for r in read_topic(out, min_count=2)] == ["a", "b"]
    dead = sorted((r for r in read_topic(dlq, min_count=2)), key=lambda r: r.offset)
    assert all(len(r.value) < 1_000_000 for r in dead)
    records = [json.loads(r.value) for r in dead]
    assert [d["offset"] for d in records] == [1, 2]
    for record, original in zip(records, [big, binary], strict=True):
        assert record["truncated"] is True
        assert record["value_bytes"] == len(original)
        assert record["value_sha256"] == hashlib.sha256(original).hexdigest()
    assert "at most" in records[0]["reason"]
    assert big.decode().startswith(records[0]["value_prefix"])
    assert binary.startswith(base64.b64decode(records[1]["value_prefix_base64"]))


def test_an_output_too_large_to_produce_dead_letters_its_input_and_consuming_goes_on(
    kafka_bootstrap, unique_name, read_topic
) -> None:
    """The dead letter used to hold the output, under the output topic at offset -1: replayed
    it would count twice, and the operator could not find the input it came from."""
    src, out, dlq = unique_name("in"), unique_name("out"), unique_name("dlq")
    ensure_topics(kafka_bootstrap, [src, out, dlq])
    big = json.dumps({"text": "x" * BIG}).encode()
    values = [b'{"text": "before"}', big, b'{"text": "after"}']
    _produce(kafka_bootstrap, src, values, max_request_size=3 * BIG)
    runner = _runner(kafka_bootstrap, src, out, dlq, unique_name("g"), max_text=3 * BIG)

    stats = runner.run(
        stop_when=lambda: runner.stats.processed + runner.stats.dead_lettered >= 3,
        stop_after=SAFETY_S,
    )

    assert (stats.processed, stats.dead_lettered) == (2, 1)
    texts = [json.loads(r.value)["text"] for r in read_topic(out, min_count=2)]
    assert texts == ["before", "after"]  # each once: nothing of the batch went out before
    (dead,) = read_topic(dlq, min_count=1)
    record = json.loads(dead.value)
    assert record["error_type"] == "OutputTooLarge" and record["truncated"] is True
    assert (record["source_topic"], record["partition"], record["offset"]) == (src, 0, 1)
    assert record["value_bytes"] == len(big)  # the input, not the output
    assert "max_request_size of 1048576" in record["reason"]
    assert list(dead.headers) == [("trace-id", b"t1")]
    failed = runner.metrics.registry.get_sample_value(
        "threefold_stream_messages_failed_total", {"topic": src, "error_type": "OutputTooLarge"}
    )
    assert failed == 1


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compressed_input_of_every_codec_is_consumed(
    codec, kafka_bootstrap, unique_name, read_topic
) -> None:
    src, out, dlq = unique_name("in"), unique_name("out"), unique_name("dlq")
    ensure_topics(kafka_bootstrap, [src, out, dlq])
    values = [json.dumps({"text": f"{codec} {i} " * 20}).encode() for i in range(5)]
    _produce(kafka_bootstrap, src, values, compression_type=codec, linger_ms=50)
    runner = _runner(kafka_bootstrap, src, out, dlq, unique_name("g"))

    stats = runner.run(stop_when=lambda: runner.stats.processed >= 5, stop_after=SAFETY_S)

    assert (stats.processed, stats.dead_lettered) == (5, 0)
    texts = [json.loads(r.value)["text"] for r in read_topic(out, min_count=5)]
    assert texts == [f"{codec} {i} " * 20 for i in range(5)]


def test_input_headers_are_carried_to_outputs_and_dead_letters(
    kafka_bootstrap, unique_name, read_topic
) -> None:
    src, out, dlq = unique_name("in"), unique_name("out"), unique_name("dlq")
    ensure_topics(kafka_bootstrap, [src, out, dlq])
    _produce(kafka_bootstrap, src, [b'{"text": "ok"}', b"not json"])
    runner = _runner(kafka_bootstrap, src, out, dlq, unique_name("g"))

    runner.run(
        stop_when=lambda: runner.stats.processed + runner.stats.dead_lettered >= 2,
        stop_after=SAFETY_S,
    )

    (scored,) = read_topic(out, min_count=1)
    assert list(scored.headers) == [("trace-id", b"t0")]
    (dead,) = read_topic(dlq, min_count=1)
    assert list(dead.headers) == [("trace-id", b"t1")]
    assert json.loads(dead.value)["headers"] == [["trace-id", "t1"]]


class _RawHeaderName(str):
    """A header name kafka-python writes as bytes that are not UTF-8, as other clients may (the
    broker accepts them; kafka-python's consumer cannot decode them)."""

    def encode(self, *_args: object, **_kwargs: object) -> bytes:
        return b"\xff\xfe-name"


def test_a_record_the_consumer_cannot_decode_is_dead_lettered_and_consuming_goes_on(
    kafka_bootstrap, unique_name, read_topic
) -> None:
    """It stalled the partition: the runner reported Kafka unavailable and reconnected to the
    same record forever, and 'before', 'after' never came out."""
    src, out, dlq = unique_name("in"), unique_name("out"), unique_name("dlq")
    ensure_topics(kafka_bootstrap, [src, out, dlq])
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    try:
        producer.send(src, b'{"text": "before"}')
        producer.send(src, b'{"text": "odd header"}', headers=[(_RawHeaderName("x"), b"v")])
        producer.flush(timeout=30)
        producer.send(src, b'{"text": "after"}')  # a later producer batch
        producer.flush(timeout=30)
    finally:
        producer.close()
    runner = _runner(kafka_bootstrap, src, out, dlq, unique_name("g"))

    stats = runner.run(
        stop_when=lambda: runner.stats.processed >= 2 and runner.stats.dead_lettered >= 1,
        stop_after=30,
    )

    assert (stats.processed, stats.dead_lettered, stats.reconnects) == (2, 1, 0)
    assert [json.loads(r.value)["text"] for r in read_topic(out, min_count=2)] == [
        "before",
        "after",
    ]
    (dead,) = read_topic(dlq, min_count=1)
    record = json.loads(dead.value)
    assert (record["error_type"], record["offset"]) == ("CorruptRecordError", 1)
    assert "could not decode" in record["reason"]


def _produce_with_unreadable(bootstrap: str, topic: str, texts: list[str | None]) -> None:
    """One record per text, each flushed alone; None: a record the consumer cannot decode."""
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    try:
        for text in texts:
            if text is None:
                odd = [(_RawHeaderName("x"), b"v")]
                producer.send(topic, b'{"text": "odd header"}', headers=odd)
            else:
                producer.send(topic, json.dumps({"text": text}).encode())
            producer.flush(timeout=30)
    finally:
        producer.close()


def test_an_unreadable_last_record_counts_once_the_offset_past_it_is_committed(
    kafka_bootstrap, unique_name, read_topic
) -> None:
    """It counted as dead-lettered before any commit, and nothing committed past it: the
    group's next consumer dead-lettered (and counted) it again."""
    src, out, dlq = unique_name("in"), unique_name("out"), unique_name("dlq")
    ensure_topics(kafka_bootstrap, [src, out, dlq])
    _produce_with_unreadable(kafka_bootstrap, src, ["before", None])
    group = unique_name("g")
    runner = _runner(kafka_bootstrap, src, out, dlq, group)

    stats = runner.run(
        stop_when=lambda: runner.stats.processed >= 1 and runner.stats.dead_lettered >= 1,
        stop_after=30,
    )

    assert (stats.processed, stats.dead_lettered) == (1, 1)
    assert _committed(kafka_bootstrap, group, src) == 2  # past it: not read again
    assert len(read_topic(dlq)) == 1


class FailsOnceAt(Echo):
    """Echo whose dependency is away the first time it sees the message at `offset`."""

    def __init__(self, out_topic: str, offset: int) -> None:
        super().__init__(out_topic)
        self.offset = offset
        self.failed = False

    def process(self, batch: list[Message]) -> BatchResult:
        if not self.failed and any(m.offset == self.offset for m in batch):
            self.failed = True
            raise ServiceError("the dependency is away, once")
        return super().process(batch)


def test_an_unreadable_record_read_again_after_a_drop_is_dead_lettered_and_counted_once(
    kafka_bootstrap, unique_name, read_topic
) -> None:
    """A dependency outage drops the uncommitted messages and reads them again: the unreadable
    record among them was dead-lettered and counted a second time."""
    src, out, dlq = unique_name("in"), unique_name("out"), unique_name("dlq")
    ensure_topics(kafka_bootstrap, [src, out, dlq])
    _produce_with_unreadable(kafka_bootstrap, src, ["before", None, "after"])
    group = unique_name("g")
    processor = FailsOnceAt(out, offset=2)  # read after the unreadable record only
    runner = _runner(
        kafka_bootstrap, src, out, dlq, group, processor=processor, max_reconnect_backoff_ms=500
    )
    metric = runner.metrics.registry.get_sample_value

    def caught_up() -> bool:
        lag = metric("threefold_stream_consumer_lag", {"topic": src, "partition": "0"})
        return runner.stats.processed >= 2 and lag == 0

    stats = runner.run(stop_when=caught_up, stop_after=30)

    assert processor.failed
    assert (stats.processed, stats.dead_lettered, stats.reconnects) == (2, 1, 0)
    assert len(read_topic(dlq)) == 1
    assert _committed(kafka_bootstrap, group, src) == 3
    failed = {"topic": src, "error_type": "CorruptRecordError"}
    assert metric("threefold_stream_messages_failed_total", failed) == 1


@pytest.fixture
def own_broker() -> Iterator[list[KafkaService]]:
    """A broker this test may stop and restart (the list holds the current one)."""
    brokers = [start_kafka()]
    yield brokers
    brokers[-1].stop()


@pytest.mark.parametrize("outage_s", [1, 12, pytest.param(35, marks=pytest.mark.slow)])
def test_the_consumer_survives_a_broker_restart_and_resumes(outage_s, own_broker) -> None:
    bootstrap = own_broker[0].bootstrap_servers
    src, out, dlq, group = "news", "scored", "news.dlq", "g-restart"
    ensure_topics(bootstrap, [src, out, dlq])
    runner = _runner(bootstrap, src, out, dlq, group, max_reconnect_backoff_ms=1000)
    failures: list[BaseException] = []

    def consume() -> None:
        try:
            runner.run(stop_after=SAFETY_S * 2)
        except BaseException as exc:  # the test fails below when the runner gave up
            failures.append(exc)

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    _produce(bootstrap, src, [json.dumps({"text": f"before {i}"}).encode() for i in range(5)])
    assert len(read_topic_records(bootstrap, out, min_count=5, timeout_s=SAFETY_S)) == 5

    own_broker[0].stop()  # tansu keeps nothing: topics, offsets and groups are gone
    time.sleep(outage_s)
    own_broker.append(start_kafka(port=int(bootstrap.rsplit(":", 1)[1])))
    ensure_topics(bootstrap, [src, out, dlq])
    _produce(bootstrap, src, [json.dumps({"text": f"after {i}"}).encode() for i in range(5)])

    after = read_topic_records(bootstrap, out, min_count=5, timeout_s=SAFETY_S)
    runner.stop()
    thread.join(timeout=60)
    assert failures == []
    assert sorted(json.loads(r.value)["text"] for r in after) == [f"after {i}" for i in range(5)]
    assert runner.stats.reconnects >= 1  # it noticed the outage, reported it and reconnected
    assert runner.degraded is False


def test_a_broker_gone_while_the_stream_is_quiet_is_reported_then_reconnected(
    own_broker,
) -> None:
    """No send, flush or commit is there to fail while nothing arrives: the runner still
    notices a group with no reachable coordinator (past session_timeout_ms), reports Kafka
    down and reconnects; kafka-python alone would look for one silently for ever."""
    bootstrap = own_broker[0].bootstrap_servers
    src, out, dlq, group = "news", "scored", "news.dlq", "g-quiet-outage"
    ensure_topics(bootstrap, [src, out, dlq])
    runner = _runner(bootstrap, src, out, dlq, group, max_reconnect_backoff_ms=1000)
    running = RunnerThreads(SAFETY_S)
    thread = running.start(runner)
    try:
        _produce(bootstrap, src, [json.dumps({"text": "before"}).encode()])
        assert len(read_topic_records(bootstrap, out, min_count=1, timeout_s=SAFETY_S)) == 1

        own_broker[0].stop()
        running.wait_for(lambda: runner.status().state == "kafka_down", "Kafka reported down")

        own_broker.append(start_kafka(port=int(bootstrap.rsplit(":", 1)[1])))
        ensure_topics(bootstrap, [src, out, dlq])
        running.wait_for(lambda: runner.status().state == "running", "reconnected")
        _produce(bootstrap, src, [json.dumps({"text": "after"}).encode()])
        after = read_topic_records(bootstrap, out, min_count=1, timeout_s=SAFETY_S)
        assert [json.loads(r.value)["text"] for r in after] == ["after"]
    finally:
        running.stop_all()
    assert not thread.is_alive() and not running.errors, running.errors


def test_the_coordinator_watch_is_off_without_kafka_pythons_coordinator_id() -> None:
    """The watch reads kafka-python's private coordinator id: a release without it turns the
    watch off instead of taking every healthy consumer for one without a coordinator."""
    from types import SimpleNamespace

    from threefold.streaming.runner import KafkaUnavailable

    runner = _runner("127.0.0.1:9", "news", "scored", "news.dlq", "g-watch")
    runner._coordinator_lost_at = time.monotonic() - 100  # lost long ago, if it were watched
    runner._watch_coordinator(SimpleNamespace(_coordinator=SimpleNamespace()))  # no attribute
    with pytest.raises(KafkaUnavailable, match="no reachable coordinator"):
        lost = SimpleNamespace(_coordinator=SimpleNamespace(coordinator_id=None))
        runner._watch_coordinator(lost)
