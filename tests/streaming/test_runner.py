"""ConsumerRunner against the real embedded broker: outputs, dead letters, offsets, rebalances."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Collection
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition
from prometheus_client import CollectorRegistry
from support.runner_threads import RunnerThreads

from threefold.core.errors import ConfigError, ServiceError
from threefold.streaming.kafka_config import ensure_topics
from threefold.streaming.producer import JsonProducer
from threefold.streaming.runner import (
    BatchResult,
    ConsumerRunner,
    DependencyRefused,
    Message,
    Output,
    ProcessingError,
)

pytestmark = pytest.mark.integration
SAFETY_S = 90  # a runner that never reaches its goal stops here and the test then fails
# Shorter session/rebalance timeouts where a test waits for a member to leave or die.
FAST_REBALANCE = {
    "session_timeout_ms": 3000,
    "heartbeat_interval_ms": 500,
    "max_poll_interval_ms": 4000,
}


Parsed = tuple[Message, str | None, str | None]  # (message, text, reason it was rejected)


class Upper:
    """Uppercases `text`. "poison" fails its batch; "down" raises `outage` (a ServiceError
    class) while it is set."""

    def __init__(
        self,
        out_topic: str,
        *,
        outage: type[ServiceError] | None = None,
        side_topic: str | None = None,
        bootstrap: str | None = None,
    ) -> None:
        self.out_topic = out_topic
        self.bootstrap = bootstrap
        self.outage = outage
        self.seen: list[tuple[int, int]] = []
        self.outage_calls = 0  # calls that raised `outage`
        self.revoked: list[set] = []
        self.assigned: list[set] = []
        self.side_topic = side_topic
        self.side = None
        self.lock = threading.Lock()

    def process(self, batch: list[Message]) -> BatchResult:
        return self._uppercase(batch, _parse(batch))

    def _uppercase(self, batch: list[Message], parsed: list[Parsed]) -> BatchResult:
        outputs, failed = [], []
        for m, text, reason in parsed:
            if text is None:
                failed.append((m, reason))
                continue
            if text == "down" and self.outage is not None:
                self.outage_calls += 1
                raise self.outage("state store is down")
            outputs.append(Output(self.out_topic, {"text": text.upper()}, key=m.key_text()))
        with self.lock:
            self.seen.extend((m.partition, m.offset) for m in batch)
        return BatchResult(outputs, failed)

    def on_partitions_revoked(self, partitions: Collection[TopicPartition]) -> None:
        self.revoked.append(set(partitions))
        if self.side_topic:  # like an app flushing state: produce + flush inside the hook
            if self.side is None:
                self.side = JsonProducer(self.bootstrap)
            self.side.send(self.side_topic, {"revoked": sorted(p.partition for p in partitions)})
            self.side.flush()

    def on_partitions_assigned(self, partitions: Collection[TopicPartition]) -> None:
        self.assigned.append(set(partitions))


class PreparedUpper(Upper):
    """Upper split in two like a model-backed processor: a pure `prepare` (parse, "poison"
    fails it) on the runner's worker thread, then `apply` ("down" fails it) on the consumer's."""

    def __init__(self, out_topic: str, **kw) -> None:
        super().__init__(out_topic, **kw)
        self.prepare_threads: set[str] = set()
        self.apply_threads: set[str] = set()

    def process(self, batch: list[Message]) -> BatchResult:
        return self.apply(batch, self.prepare(batch))

    def prepare(self, batch: list[Message]) -> list[Parsed]:
        self.prepare_threads.add(threading.current_thread().name)
        return _parse(batch)

    def apply(self, batch: list[Message], prepared: list[Parsed]) -> BatchResult:
        self.apply_threads.add(threading.current_thread().name)
        return self._uppercase(batch, prepared)


def _parse(batch: list[Message]) -> list[Parsed]:
    """(message, text, None) or (message, None, reason); "poison" fails the whole batch."""
    parsed: list[Parsed] = []
    for m in batch:
        try:
            text = m.json()["text"]
        except ProcessingError as exc:
            parsed.append((m, None, exc.reason))
            continue
        if text == "poison":
            raise ProcessingError("poison marker")
        parsed.append((m, text, None))
    return parsed


BOTH_KINDS = pytest.mark.parametrize(
    ("kind", "workers"),
    [(Upper, 1), (PreparedUpper, 1), (PreparedUpper, 2)],
    ids=["plain", "pipelined", "two-workers"],
)


def _topics(kafka_bootstrap: str, unique_name, partitions: int = 1) -> tuple[str, str, str]:
    names = unique_name("in"), unique_name("out"), unique_name("dlq")
    ensure_topics(kafka_bootstrap, names, partitions=partitions)
    return names


def _send(bootstrap: str, topic: str, values: list[object]) -> None:
    with JsonProducer(bootstrap) as producer:
        for i, value in enumerate(values):
            if isinstance(value, bytes):
                producer.send_bytes(topic, value, key=f"k{i}")
            else:
                producer.send(topic, value, key=f"k{i}")
        producer.flush()


def _committed(bootstrap: str, group: str, topic: str, partition: int = 0) -> int | None:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    try:
        return consumer.committed(TopicPartition(topic, partition))
    finally:
        consumer.close()


def test_rejects_a_dead_letter_topic_that_is_also_an_input() -> None:
    with pytest.raises(ConfigError, match="also an input topic"):
        ConsumerRunner(
            kafka="127.0.0.1:1",
            topics=["a"],
            group_id="g",
            processor=Upper("o"),
            dead_letter_topic="a",
        )


@BOTH_KINDS
def test_outputs_and_dead_letters_then_offsets_committed(
    kind, workers, kafka_bootstrap, unique_name, read_topic
) -> None:
    src, out, dlq = _topics(kafka_bootstrap, unique_name)
    values: list[object] = [{"text": f"hello {i}"} for i in range(10)]
    values += [{"text": "poison"}, b"\xff\xfe not utf-8", b"[1, 2]"]
    _send(kafka_bootstrap, src, values)
    group = unique_name("g")
    registry = CollectorRegistry()
    processor = kind(out)
    runner = ConsumerRunner(
        kafka=kafka_bootstrap,
        topics=[src],
        group_id=group,
        processor=processor,
        dead_letter_topic=dlq,
        max_batch=4,
        max_wait_ms=50,
        retry_backoff_ms=10,
        metrics_registry=registry,
        prepare_workers=workers,
    )

    def lag() -> float | None:
        return registry.get_sample_value(
            "threefold_stream_consumer_lag", {"topic": src, "partition": "0"}
        )

    stats = runner.run(
        stop_when=lambda: runner.stats.processed + runner.stats.dead_lettered >= 13 and lag() == 0,
        stop_after=SAFETY_S,
    )

    assert (stats.processed, stats.dead_lettered) == (10, 3)
    outputs = read_topic(out, min_count=10)
    # in input order, also when two batches are prepared at once
    assert [json.loads(r.value)["text"] for r in outputs] == [f"HELLO {i}" for i in range(10)]
    dead = [json.loads(r.value) for r in read_topic(dlq, min_count=3)]
    by_offset = {d["offset"]: d for d in dead}
    assert set(by_offset) == {10, 11, 12}
    assert by_offset[10]["reason"] == "poison marker"
    assert by_offset[10]["error_type"] == "ProcessingError"
    assert json.loads(by_offset[10]["value"]) == {"text": "poison"}
    assert "not UTF-8" in by_offset[11]["reason"] and "value_base64" in by_offset[11]
    assert by_offset[12]["reason"] == "expected a JSON object, found list"
    assert all(d["source_topic"] == src and d["partition"] == 0 for d in dead)
    assert by_offset[11]["key"] == "k11"
    assert _committed(kafka_bootstrap, group, src) == 13
    assert processor.revoked, "a graceful stop lets the processor flush its state"
    assert registry.get_sample_value("threefold_stream_messages_processed_total", {"topic": src})
    assert (
        registry.get_sample_value(
            "threefold_stream_messages_failed_total", {"topic": src, "error_type": "rejected"}
        )
        == 2
    )
    assert registry.get_sample_value("threefold_stream_batch_size_count") == stats.batches
    if kind is PreparedUpper:  # model work off the consumer thread, effects on it
        # (the poison batch's failed prepare is redone by process() on the consumer thread)
        workers_used = processor.prepare_threads - {threading.current_thread().name}
        assert workers_used and all(t.startswith("threefold-prepare_") for t in workers_used)
        assert processor.apply_threads == {threading.current_thread().name}


def _outage_runner(
    kafka_bootstrap: str, src: str, dlq: str, group: str, processor: Upper, workers: int
) -> ConsumerRunner:
    return ConsumerRunner(
        kafka=kafka_bootstrap,
        topics=[src],
        group_id=group,
        processor=processor,
        dead_letter_topic=dlq,
        max_batch=2,
        max_wait_ms=50,
        max_retries=1,
        retry_backoff_ms=10,
        prepare_workers=workers,
        max_reconnect_backoff_ms=1000,
    )


@BOTH_KINDS
def test_a_dependency_outage_is_retried_until_it_ends_and_nothing_is_lost(
    kind, workers, kafka_bootstrap, unique_name, read_topic
) -> None:
    """A ServiceError (Redis down) used to stop the runner after the batch's few retries; it
    must back off and retry however long the outage lasts, committing nothing meanwhile."""
    src, out, dlq = _topics(kafka_bootstrap, unique_name)
    texts = ["a", "b", "c", "d", "e", "down", "g", "h"]
    _send(kafka_bootstrap, src, [{"text": t} for t in texts])
    group = unique_name("g")
    processor = kind(out, outage=ServiceError)
    statuses: list = []
    processor.on_status = statuses.append  # type: ignore[attr-defined]
    runner = _outage_runner(kafka_bootstrap, src, dlq, group, processor, workers)
    running = RunnerThreads(SAFETY_S)
    running.start(runner)
    try:
        running.wait_for(lambda: runner.status().retries >= 3, "three retries of the outage")
        assert runner.status().state == "dependency_down"
        assert _committed(kafka_bootstrap, group, src) == 4  # [0,1] [2,3] done; [4,5] not
        processor.outage = None  # the dependency answers again
        running.wait_for(lambda: runner.stats.processed == 8, "the rest processed")
    finally:
        running.stop_all()
    assert not running.errors
    assert sorted(json.loads(r.value)["text"] for r in read_topic(out, min_count=8)) == sorted(
        t.upper() for t in texts
    )
    assert read_topic(dlq, timeout_s=2) == []  # an outage dead-letters nothing
    assert _committed(kafka_bootstrap, group, src) == 8
    metric = runner.metrics.registry.get_sample_value
    assert metric("threefold_stream_dependency_retries_total") >= 3
    # one call per backoff: the batch is not retried at once (each try: a Redis timeout)
    assert metric("threefold_stream_dependency_retries_total") == processor.outage_calls
    assert metric("threefold_stream_dependency_down_since_seconds") == 0
    down = [s for s in statuses if s.state == "dependency_down"]
    assert down and "state store is down" in down[0].reason and down[0].down_since
    assert statuses[-1].state == "stopped" and statuses[-1].reason == ""


@BOTH_KINDS
def test_a_refusing_dependency_stops_the_runner_and_the_next_consumer_reads_the_batch(
    kind, workers, kafka_bootstrap, unique_name, read_topic
) -> None:
    """A dependency that answers and refuses (wrong credentials) is not an outage: waiting
    cannot fix it, so the runner stops without committing."""
    src, out, dlq = _topics(kafka_bootstrap, unique_name)
    texts = ["a", "b", "c", "d", "e", "down", "g", "h"]
    _send(kafka_bootstrap, src, [{"text": t} for t in texts])
    group = unique_name("g")

    first = _outage_runner(
        kafka_bootstrap, src, dlq, group, kind(out, outage=DependencyRefused), workers
    )
    with pytest.raises(DependencyRefused, match="state store is down"):
        first.run(stop_after=SAFETY_S)
    assert _committed(kafka_bootstrap, group, src) == 4  # batches [0,1] [2,3] done; [4,5] not
    assert first.status().state == "stopped"
    assert first.status().reason == "DependencyRefused: state store is down"

    second = kind(out)
    again = _outage_runner(kafka_bootstrap, src, dlq, group, second, workers)
    again.run(stop_when=lambda: again.stats.processed >= 4, stop_after=SAFETY_S)
    assert sorted(second.seen)[0] == (0, 4)  # re-read from the last commit
    assert sorted(json.loads(r.value)["text"] for r in read_topic(out, min_count=8)) == sorted(
        t.upper() for t in texts
    )
    assert read_topic(dlq, timeout_s=2) == []


@BOTH_KINDS
def test_a_rebalance_between_two_consumers_loses_nothing(
    kind, workers, kafka_bootstrap, unique_name, read_topic
) -> None:
    src, out, dlq = _topics(kafka_bootstrap, unique_name, partitions=2)
    side = unique_name("revocations")
    group = unique_name("g")
    processors = [kind(out, side_topic=side, bootstrap=kafka_bootstrap) for _ in range(2)]
    runners = [
        ConsumerRunner(
            kafka=kafka_bootstrap,
            topics=[src],
            group_id=group,
            processor=p,
            dead_letter_topic=dlq,
            max_batch=5,
            max_wait_ms=50,
            consumer_overrides=FAST_REBALANCE,
            prepare_workers=workers,
        )
        for p in processors
    ]
    running = RunnerThreads(SAFETY_S)
    run, wait_for = running.start, running.wait_for

    def seen() -> set[tuple[int, int]]:
        return set(processors[0].seen) | set(processors[1].seen)

    threads = [run(runners[0])]
    wait_for(lambda: processors[0].assigned, "the first consumer's assignment")
    texts = [f"m{i}" for i in range(60)]
    _send(kafka_bootstrap, src, [{"text": t} for t in texts[:20]])
    threads.append(run(runners[1]))  # joins mid-stream: rebalance
    _send(kafka_bootstrap, src, [{"text": t} for t in texts[20:40]])
    wait_for(lambda: processors[1].assigned and len(seen()) >= 40, "both consumers")
    runners[0].stop()  # leaves the group: the second one takes over both partitions
    threads[0].join(timeout=SAFETY_S)
    _send(kafka_bootstrap, src, [{"text": t} for t in texts[40:]])
    wait_for(lambda: len(seen()) >= 60, "all 60 messages")
    runners[1].stop()
    threads[1].join(timeout=SAFETY_S)

    for p in processors:
        if p.side is not None:
            p.side.close()
    assert not running.errors, running.errors
    produced = {json.loads(r.value)["text"] for r in read_topic(out, min_count=60)}
    assert produced >= {t.upper() for t in texts}
    assert processors[0].revoked and any(len(a) == 2 for a in processors[1].assigned)
    assert read_topic(side, min_count=1), "a revocation hook can produce and flush"


RUNNER_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    from threefold.streaming.runner import BatchResult, ConsumerRunner, Output

    bootstrap, src, out, dlq, group, delay = sys.argv[1:7]

    class Slow:
        def process(self, batch):
            print(json.dumps({"processing": [m.offset for m in batch]}), flush=True)
            time.sleep(float(delay))
            return BatchResult([Output(out, {"offset": m.offset}) for m in batch])

    fast = json.loads(sys.argv[7])
    runner = ConsumerRunner(kafka=bootstrap, topics=[src], group_id=group, processor=Slow(),
                            dead_letter_topic=dlq, max_batch=3, max_wait_ms=50,
                            consumer_overrides=fast)
    runner.install_signal_handlers()
    stats = runner.run()
    print(json.dumps({"stopped": stats.processed}), flush=True)
    """
)


def _start_runner(tmp_path: Path, *args: str) -> subprocess.Popen:
    script = tmp_path / "runner.py"
    script.write_text(RUNNER_SCRIPT)
    return subprocess.Popen(
        [sys.executable, str(script), *args, json.dumps(FAST_REBALANCE)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def _first_batch(proc: subprocess.Popen) -> list[int]:
    line = proc.stdout.readline()
    assert line, "the runner subprocess exited before processing anything"
    return json.loads(line)["processing"]


def test_sigterm_finishes_the_batch_in_flight_and_commits(
    tmp_path, kafka_bootstrap, unique_name, read_topic
) -> None:
    src, out, dlq = _topics(kafka_bootstrap, unique_name)
    _send(kafka_bootstrap, src, [{"text": str(i)} for i in range(12)])
    group = unique_name("g")
    proc = _start_runner(tmp_path, kafka_bootstrap, src, out, dlq, group, "1.0")
    try:
        in_flight = _first_batch(proc)
        proc.send_signal(signal.SIGTERM)
        stdout, _ = proc.communicate(timeout=SAFETY_S)
    finally:
        proc.kill()
    assert proc.returncode == 0
    lines = [json.loads(line) for line in stdout.splitlines()]
    processed = lines[-1]["stopped"]
    assert processed >= len(in_flight)
    assert _committed(kafka_bootstrap, group, src) == processed
    offsets = sorted(json.loads(r.value)["offset"] for r in read_topic(out, min_count=processed))
    assert offsets == list(range(processed))


def test_sigkill_mid_batch_then_restart_reprocesses_the_batch(
    tmp_path, kafka_bootstrap, unique_name, read_topic
) -> None:
    src, out, dlq = _topics(kafka_bootstrap, unique_name)
    _send(kafka_bootstrap, src, [{"text": str(i)} for i in range(6)])
    group = unique_name("g")
    proc = _start_runner(tmp_path, kafka_bootstrap, src, out, dlq, group, "60")
    try:
        in_flight = _first_batch(proc)
    finally:
        proc.kill()
        proc.wait()
    assert _committed(kafka_bootstrap, group, src) is None

    processor = Upper(out)
    runner = ConsumerRunner(
        kafka=kafka_bootstrap,
        topics=[src],
        group_id=group,
        processor=processor,
        dead_letter_topic=dlq,
        consumer_overrides=FAST_REBALANCE,
    )
    runner.run(stop_when=lambda: runner.stats.processed >= 6, stop_after=SAFETY_S)
    assert {(0, o) for o in in_flight} <= set(processor.seen)
    assert _committed(kafka_bootstrap, group, src) == 6


def test_a_quiet_consumer_gives_the_processor_its_idle_ticks(
    kafka_bootstrap, unique_name, read_topic
) -> None:
    src, out, dlq = _topics(kafka_bootstrap, unique_name)
    _send(kafka_bootstrap, src, [{"text": "only"}])

    ticks: list[int] = []

    class Ticking(Upper):
        def on_idle(self) -> None:
            ticks.append(len(self.seen))  # how many messages were processed before the tick

    processor = Ticking(out)
    runner = ConsumerRunner(
        kafka=kafka_bootstrap,
        topics=[src],
        group_id=unique_name("g"),
        processor=processor,
        dead_letter_topic=dlq,
        max_wait_ms=50,
    )
    runner.run(stop_when=lambda: ticks.count(1) >= 2, stop_after=SAFETY_S)
    assert ticks.count(1) >= 2  # ticks go on after the message (and ran during the join)
    assert [json.loads(r.value) for r in read_topic(out, min_count=1)] == [{"text": "ONLY"}]
