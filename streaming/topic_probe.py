"""TopicProbe: whether records with given ids already are in a topic, read without a group.

A producer that dies between the broker acknowledging a record and its own bookkeeping cannot
know whether the record landed. Before sending, it notes the topic's end offsets (`end_offsets`);
whoever takes the work over reads the topic from there (`ids_since`) and resends only what is
missing, so a crash neither loses the record nor publishes it twice.
"""

from __future__ import annotations

import time
from typing import Any

from threefold.core.errors import ServiceError
from threefold.core.untrusted_json import UntrustedJsonError, loads_untrusted
from threefold.streaming.connections import KafkaTarget, as_kafka_settings
from threefold.streaming.kafka_config import consumer_config

Offsets = dict[int, int]  # partition -> offset


class TopicProbe:
    """Reads one topic of JSON records by partition offsets (no consumer group, no commits)."""

    def __init__(self, kafka: KafkaTarget, topic: str, *, timeout_s: float = 10.0) -> None:
        settings = as_kafka_settings(kafka)
        self.topic = topic
        self.timeout_s = timeout_s
        self._config = {**settings.client_config(), **consumer_config(None)}
        self._consumer: Any = None

    def _client(self) -> Any:
        if self._consumer is None:
            from kafka import KafkaConsumer

            self._consumer = KafkaConsumer(**self._config)
        return self._consumer

    def end_offsets(self) -> Offsets:
        """Each partition's next offset now ({} while the topic does not exist)."""
        from kafka import TopicPartition

        consumer = self._client()
        numbers = consumer.partitions_for_topic(self.topic)
        partitions = [TopicPartition(self.topic, p) for p in sorted(numbers or ())]  # None: unknown
        if not partitions:
            return {}
        ends = consumer.end_offsets(partitions, timeout_ms=int(self.timeout_s * 1000))
        return {tp.partition: int(offset) for tp, offset in ends.items()}

    def ids_since(self, since: Offsets, wanted: set[str], *, id_field: str) -> set[str]:
        """Which of `wanted` records (by `id_field`) the topic holds past `since`; a partition
        missing from `since` (created later) is read from its start. ServiceError if the broker
        does not answer within the timeout."""
        from kafka import TopicPartition

        ends = self.end_offsets()
        todo = {
            TopicPartition(self.topic, p): (since.get(p, 0), end)
            for p, end in ends.items()
            if since.get(p, 0) < end
        }
        if not todo or not wanted:
            return set()
        consumer = self._client()
        consumer.assign(list(todo))
        for tp, (start, _) in todo.items():
            consumer.seek(tp, start)
        found: set[str] = set()
        deadline = time.monotonic() + self.timeout_s
        while todo:
            if time.monotonic() > deadline:
                raise ServiceError(
                    f"reading topic {self.topic!r} back took over {self.timeout_s} s; "
                    "is the broker up?"
                )
            for records in consumer.poll(timeout_ms=200).values():
                for record in records:
                    record_id = _field(record.value, id_field)
                    if record_id in wanted:
                        found.add(record_id)
            for tp in list(todo):
                if consumer.position(tp) >= todo[tp][1]:
                    del todo[tp]
        return found

    def close(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            consumer.close()


def _field(value: bytes | None, name: str) -> str | None:
    """`name` of a JSON object record, or None for anything else (other writers, bad bytes,
    hostile nesting)."""
    try:
        decoded = loads_untrusted(value, what="record") if value is not None else None
    except UntrustedJsonError:
        return None
    found = decoded.get(name) if isinstance(decoded, dict) else None
    return found if isinstance(found, str) else None
