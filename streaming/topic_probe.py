"""TopicProbe: whether records with given ids already are in a topic, read without a group.

A producer that dies between the broker acknowledging a record and its own bookkeeping cannot
know whether the record landed. Before sending, it notes the topic's end offsets (`end_offsets`);
whoever takes the work over reads the topic from there (`ids_since`) and resends only what is
missing, so a crash neither loses the record nor publishes it twice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from threefold.core.bounded_call import call_within
from threefold.core.errors import ServiceError
from threefold.core.untrusted_json import UntrustedJsonError, loads_untrusted
from threefold.streaming.connections import KafkaTarget, as_kafka_settings
from threefold.streaming.kafka_calls import (
    Deadline,
    close_unwanted_consumer,
    new_consumer,
    waiting_for_kafka,
)
from threefold.streaming.kafka_config import consumer_config

Offsets = dict[int, int]  # partition -> offset
T = TypeVar("T")
POLL_MS = 200  # one fetch's wait while reading the topic back


class TopicProbe:
    """Reads one topic of JSON records by partition offsets (no consumer group, no commits).

    Each call gives up after `timeout_s` in all (cut to the end of the calling thread's
    `kafka_calls.time_budget`) with a ServiceError when the broker does not answer (stopped,
    frozen, unreachable): kafka-python alone waits for its bootstrap (30 s), a request timeout
    (30 s) or a reconnect backoff that grows to 30 s, however short the probe's timeout, and
    its caller is a consumer thread that must poll again within max_poll_interval_ms to stay
    in its group."""

    def __init__(self, kafka: KafkaTarget, topic: str, *, timeout_s: float = 10.0) -> None:
        settings = as_kafka_settings(kafka)
        self.topic = topic
        self.timeout_s = timeout_s
        self.bootstrap = settings.bootstrap_servers
        self._config = {**settings.client_config(), **consumer_config(None)}
        self._consumer: Any = None

    def _client(self, deadline: Deadline) -> Any:
        if self._consumer is None:
            config = {**self._config, "bootstrap_timeout_ms": max(1, deadline.left_ms())}
            self._consumer = self._within(
                deadline,
                "connecting to read",
                lambda: new_consumer(config),
                close_unwanted_consumer,
            )
        return self._consumer

    def _within(
        self,
        deadline: Deadline,
        doing: str,
        call: Callable[[], T],
        late: Callable[[T | None], None],
    ) -> T:
        """`call()` (`doing` what, for the error), given up at `deadline`: a ServiceError then,
        and `late` runs once the call is over (it closes what the call used or made)."""
        if deadline.passed:
            raise self._no_answer(doing, deadline)
        try:
            with waiting_for_kafka():
                return call_within(
                    call, timeout_s=deadline.left_s(), late=late, name="threefold-topic-probe"
                )
        except TimeoutError:
            raise self._no_answer(doing, deadline) from None

    def _with_consumer(
        self, consumer: Any, deadline: Deadline, doing: str, call: Callable[[], T]
    ) -> T:
        """`call()`, which uses `consumer`, given up at `deadline`: a call given up on leaves
        the consumer to it (closed when the call ends), and the next call makes a new one."""
        try:
            return self._within(deadline, doing, call, lambda _: close_unwanted_consumer(consumer))
        except ServiceError:
            self._consumer = None
            raise

    def _no_answer(
        self, doing: str, deadline: Deadline, error: BaseException | None = None
    ) -> ServiceError:
        why = f": {error!r}" if error is not None else ""
        return ServiceError(
            f"the Kafka broker at {self.bootstrap!r} did not answer within "
            f"{deadline.limit_text} ({doing} topic {self.topic!r}{why}); is it up?"
        )

    def end_offsets(self) -> Offsets:
        """Each partition's next offset now ({} while the topic does not exist); ServiceError
        when the broker does not answer within the timeout."""
        return self._end_offsets(Deadline.after(self.timeout_s))

    def _end_offsets(self, deadline: Deadline) -> Offsets:
        from kafka import TopicPartition
        from kafka.errors import KafkaError

        try:
            consumer = self._client(deadline)
            numbers = self._partitions(consumer, deadline) or ()  # None: unknown
            partitions = [TopicPartition(self.topic, p) for p in sorted(numbers)]
            if not partitions:
                return {}
            ends = consumer.end_offsets(partitions, timeout_ms=max(1, deadline.left_ms()))
        except KafkaError as exc:
            raise self._no_answer("reading the end offsets of", deadline, exc) from exc
        return {tp.partition: int(offset) for tp, offset in ends.items()}

    def _partitions(self, consumer: Any, deadline: Deadline) -> set[int] | None:
        """The topic's partition numbers. kafka-python asks the broker when its cache lacks
        the topic and waits for the answer without a limit."""
        return self._with_consumer(
            consumer,
            deadline,
            "listing the partitions of",
            lambda: consumer.partitions_for_topic(self.topic),
        )

    def ids_since(self, since: Offsets, wanted: set[str], *, id_field: str) -> set[str]:
        """Which of `wanted` records (by `id_field`) the topic holds past `since`; a partition
        missing from `since` (created later) is read from its start. ServiceError if the broker
        does not answer within the timeout, which is for the whole call."""
        from kafka import TopicPartition
        from kafka.errors import KafkaError

        deadline = Deadline.after(self.timeout_s)
        ends = self._end_offsets(deadline)
        todo = {
            TopicPartition(self.topic, p): (since.get(p, 0), end)
            for p, end in ends.items()
            if since.get(p, 0) < end
        }
        if not todo or not wanted:
            return set()
        consumer = self._client(deadline)
        try:
            found = self._with_consumer(
                consumer,
                deadline,
                "reading back",
                lambda: _read_ids(consumer, todo, wanted, id_field, deadline),
            )
        except KafkaError as exc:
            raise self._no_answer("reading back", deadline, exc) from exc
        if found is None:
            raise self._no_answer("reading back", deadline)
        return found

    def close(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            consumer.close()


def _read_ids(
    consumer: Any,
    todo: dict[Any, tuple[int, int]],
    wanted: set[str],
    id_field: str,
    deadline: Deadline,
) -> set[str] | None:
    """The `wanted` ids in the records of `todo` ({TopicPartition: (start, end offset)}), read
    with `consumer` up to each partition's end; None when `deadline` passed before."""
    found: set[str] = set()
    consumer.assign(list(todo))
    for tp, (start, _) in todo.items():
        consumer.seek(tp, start)
    left = dict(todo)
    while left and not deadline.passed:
        for records in consumer.poll(timeout_ms=min(POLL_MS, max(1, deadline.left_ms()))).values():
            for record in records:
                record_id = _field(record.value, id_field)
                if record_id in wanted:
                    found.add(record_id)
        for tp in list(left):
            if consumer.position(tp) >= left[tp][1]:
                del left[tp]
    return None if left else found


def _field(value: bytes | None, name: str) -> str | None:
    """`name` of a JSON object record, or None for anything else (other writers, bad bytes,
    hostile nesting)."""
    try:
        decoded = loads_untrusted(value, what="record") if value is not None else None
    except UntrustedJsonError:
        return None
    found = decoded.get(name) if isinstance(decoded, dict) else None
    return found if isinstance(found, str) else None
