"""Replay a CSV/JSON/JSONL file into a Kafka topic as JSON messages, optionally rate-limited."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from threefold.core.errors import ConfigError, DataError
from threefold.core.tables import read_records
from threefold.core.timestamps import parse_timestamp_ms
from threefold.streaming.connections import KafkaTarget
from threefold.streaming.producer import JsonProducer

logger = logging.getLogger(__name__)

FLUSH_EVERY = 1000


def replay_file(
    path: str | Path,
    *,
    topic: str,
    kafka: KafkaTarget,
    rate: float | None = None,
    key_field: str | None = None,
    timestamp_field: str | None = None,
    progress: bool = True,
    producer_overrides: Mapping[str, Any] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Send every record of `path` to `topic`; returns {"sent", "topic", "seconds"}.

    Args:
        rate: messages per second (None: as fast as possible).
        key_field: record field used as the message key.
        timestamp_field: record field (epoch s/ms or ISO 8601) used as the message timestamp.
    """
    if rate is not None and not rate > 0:
        raise ConfigError(f"--rate must be a positive number of messages per second, found {rate}")
    required = [f for f in (key_field, timestamp_field) if f]
    hint = "or pass the right --key-field / --timestamp-field"
    records = read_records(path, required=required, hint=hint)
    prepared = []
    for record in records:
        key = record.values.get(key_field) if key_field else None
        timestamp_ms = None
        if timestamp_field:
            try:
                timestamp_ms = parse_timestamp_ms(
                    record.values[timestamp_field], name=timestamp_field
                )
            except DataError as exc:
                raise DataError(
                    str(exc), path=str(path), line=record.line, column=timestamp_field
                ) from exc
        prepared.append((record.values, None if key is None else str(key), timestamp_ms))

    from tqdm import tqdm

    producer = JsonProducer(kafka, **dict(producer_overrides or {}))
    started = clock()
    sent = 0
    try:
        with tqdm(
            total=len(prepared), unit="msg", desc=f"replay -> {topic}", disable=not progress
        ) as bar:
            for value, key, timestamp_ms in prepared:
                if rate is not None:
                    due = started + sent / rate
                    wait = due - clock()
                    if wait > 0:
                        sleep(wait)
                producer.send(topic, value, key=key, timestamp_ms=timestamp_ms)
                sent += 1
                bar.update(1)
                if sent % FLUSH_EVERY == 0:
                    producer.flush()
            producer.flush()
    finally:
        producer.close()
    seconds = clock() - started
    logger.info("replayed %d messages from %s into %s in %.2f s", sent, path, topic, seconds)
    return {"sent": sent, "topic": topic, "seconds": round(seconds, 3)}
