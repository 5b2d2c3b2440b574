"""Replay a CSV/JSON/JSONL file into a Kafka topic as JSON messages, optionally rate-limited.

A record Kafka cannot take (over the producer's max_request_size) is skipped, with a warning
naming its line, and listed in the summary; the others are sent. A broker that fails the
replay (gone, refusing the sends) ends it with a ServiceError that says how many records Kafka
acknowledged up to which line, and the line to resume from.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from kafka import errors as kafka_errors

from threefold.core.errors import ConfigError, DataError, ServiceError, first_line
from threefold.core.tables import read_records
from threefold.core.timestamps import parse_timestamp_ms
from threefold.streaming.connections import KafkaTarget
from threefold.streaming.producer import JsonProducer

logger = logging.getLogger(__name__)

FLUSH_EVERY = 1000
REFUSED_LISTED = 100  # refused records named in the summary (and logged) at most


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
    """Send every record of `path` to `topic`; returns {"sent", "refused", "refused_records",
    "topic", "seconds"}: `refused` counts the records Kafka cannot take (too large), skipped;
    `refused_records` names the first REFUSED_LISTED of them ({"line", "reason"}).

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
        prepared.append(
            (record.line, record.values, None if key is None else str(key), timestamp_ms)
        )

    from tqdm import tqdm

    overrides = dict(producer_overrides or {})
    producer = JsonProducer(kafka, **overrides)
    progress_made = _Progress(path, topic)
    started = clock()
    sent = 0
    try:
        with tqdm(
            total=len(prepared), unit="msg", desc=f"replay -> {topic}", disable=not progress
        ) as bar:
            for line, value, key, timestamp_ms in prepared:
                if rate is not None:
                    due = started + sent / rate
                    wait = due - clock()
                    if wait > 0:
                        sleep(wait)
                try:
                    producer.send(topic, value, key=key, timestamp_ms=timestamp_ms)
                except (kafka_errors.MessageSizeTooLargeError, DataError) as exc:
                    progress_made.refuse(line, _refusal(exc, overrides))
                except (kafka_errors.KafkaError, ServiceError) as exc:
                    raise progress_made.stopped(exc) from exc
                else:
                    sent += 1
                    if sent % FLUSH_EVERY == 0:
                        progress_made.flush(producer, sent, line)
                bar.update(1)
            if prepared:
                progress_made.flush(producer, sent, prepared[-1][0])
    finally:
        producer.close()
    seconds = clock() - started
    logger.info("replayed %d messages from %s into %s in %.2f s", sent, path, topic, seconds)
    return {
        "sent": sent,
        "refused": progress_made.refused,
        "refused_records": progress_made.listed,
        "topic": topic,
        "seconds": round(seconds, 3),
    }


class _Progress:
    """How far a replay got: the records Kafka acknowledged (as of the last flush) and those
    refused, for the summary and for the error that ends a replay early."""

    def __init__(self, path: str | Path, topic: str) -> None:
        self.path, self.topic = path, topic
        suffix = Path(path).suffix.lower()
        # what a record's number counts: the items of a JSON array, else the file's lines
        self.unit = "item" if suffix == ".json" else "line"
        self.keep = " (keep the header line)" if suffix == ".csv" else ""
        self.acknowledged = 0  # records acknowledged by the last flush that succeeded
        self.through_line = 0  # the line of the last record that flush covered
        self.refused = 0
        self.listed: list[dict[str, Any]] = []  # {"line", "reason"}, REFUSED_LISTED at most

    def refuse(self, line: int, reason: str) -> None:
        self.refused += 1
        if len(self.listed) < REFUSED_LISTED:
            self.listed.append({"line": line, "reason": reason})
            logger.warning(
                "%s %s %d not sent to %r: %s; going on with the next record",
                self.path,
                self.unit,
                line,
                self.topic,
                reason,
            )

    def flush(self, producer: JsonProducer, sent: int, line: int) -> None:
        """Flush `producer`: `sent` records, up to `line`, are acknowledged (ServiceError that
        says where to resume if not)."""
        try:
            producer.flush()
        except ServiceError as exc:
            raise self.stopped(exc) from exc
        self.acknowledged, self.through_line = sent, line

    def stopped(self, exc: BaseException) -> ServiceError:
        """The error that ends the replay, with the line to resume from: the first one after
        those the last flush that succeeded covered."""
        done = (
            f"{self.acknowledged} record(s) ({self.unit}s 1-{self.through_line}) acknowledged "
            "by Kafka"
            if self.acknowledged
            else "No record acknowledged by Kafka"
        )
        refused = f", {self.refused} refused (too large)" if self.refused else ""
        return ServiceError(
            f"replaying {self.path} into {self.topic!r} stopped: {first_line(exc)}. {done}"
            f"{refused}; resume from {self.unit} {self.through_line + 1}{self.keep} (records "
            "after it that were queued may be in the topic already) once the broker is reachable"
        )


def _refusal(exc: BaseException, overrides: Mapping[str, Any]) -> str:
    """Why a record was not sent, with the limit it broke and the fix."""
    if isinstance(exc, DataError):
        return str(exc)
    from kafka import KafkaProducer

    limit = overrides.get("max_request_size", KafkaProducer.DEFAULT_CONFIG["max_request_size"])
    return (
        f"too large for Kafka: {first_line(exc)} (max_request_size {limit} bytes); split or "
        "shorten the record"
    )
