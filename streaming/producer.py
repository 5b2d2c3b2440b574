"""JsonProducer: JSON values to Kafka, with send failures surfaced at flush()."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from typing import Any

from threefold.core.errors import ConfigError, DataError, ServiceError
from threefold.streaming.connections import KafkaTarget, as_kafka_settings
from threefold.streaming.kafka_config import producer_config

logger = logging.getLogger(__name__)


def encode_json(value: Any) -> bytes:
    """Compact UTF-8 JSON; DataError when the value is not JSON-serializable."""
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise DataError(
            f"message value is not JSON-serializable ({exc}); convert it to dict/list/str/number"
        ) from exc


class JsonProducer:
    """Sends dicts as JSON to Kafka. Cheap to construct; connects on first use.

    Failed sends are collected and raised (ServiceError) by the next `flush()`, so a caller that
    flushes before committing offsets never commits past a lost message.
    """

    def __init__(self, kafka: KafkaTarget, **cfg: object) -> None:
        settings = as_kafka_settings(kafka)
        self.bootstrap = settings.bootstrap_servers
        self._config = {**settings.client_config(), **producer_config(**cfg)}
        self._producer: Any = None
        self._errors: list[BaseException] = []
        self._lock = threading.Lock()

    def _client(self) -> Any:
        if self._producer is None:
            from kafka import KafkaProducer
            from kafka.errors import KafkaError

            from threefold.streaming.kafka_calls import new_client

            try:
                self._producer = new_client(KafkaProducer, self._config)
            except ValueError as exc:
                raise ConfigError(f"invalid Kafka producer settings: {exc}") from exc
            except KafkaError as exc:
                raise ServiceError(
                    f"cannot connect a Kafka producer to {self.bootstrap!r} ({exc}); start the "
                    "broker or fix KAFKA_BOOTSTRAP_SERVERS / --bootstrap"
                ) from exc
        return self._producer

    def send(
        self,
        topic: str,
        value: dict[str, Any],
        key: str | bytes | None = None,
        timestamp_ms: int | None = None,
    ) -> Any:
        """Queue one message; returns kafka-python's future (its result: RecordMetadata)."""
        return self.send_bytes(topic, encode_json(value), key=key, timestamp_ms=timestamp_ms)

    def send_bytes(
        self,
        topic: str,
        value: bytes,
        key: str | bytes | None = None,
        timestamp_ms: int | None = None,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> Any:
        """Queue a pre-encoded value, with Kafka record `headers` (name, value) if any."""
        key_bytes = key.encode("utf-8") if isinstance(key, str) else key
        future = self._client().send(
            topic,
            value=value,
            key=key_bytes,
            timestamp_ms=timestamp_ms,
            headers=list(headers) or None,
        )
        future.add_errback(self._record_error)
        return future

    def _record_error(self, exc: BaseException) -> None:
        with self._lock:
            self._errors.append(exc)

    def flush(self, timeout: float | None = 30.0) -> None:
        """Wait until every queued message is acknowledged; ServiceError if any was not."""
        if self._producer is None:
            return
        from kafka.errors import KafkaTimeoutError

        try:
            self._producer.flush(timeout=timeout)
        except KafkaTimeoutError as exc:
            raise ServiceError(
                f"Kafka at {self.bootstrap!r} did not acknowledge queued messages within "
                f"{timeout} s; is the broker up?"
            ) from exc
        with self._lock:
            errors, self._errors = self._errors, []
        if errors:
            raise ServiceError(
                f"{len(errors)} message(s) were not written to Kafka at {self.bootstrap!r}; "
                f"first error: {errors[0]!r}"
            ) from errors[0]

    def close(self, timeout: float | None = 10.0) -> None:
        """Flush what is queued (best effort: call flush() first to see errors) and close."""
        if self._producer is None:
            return
        producer, self._producer = self._producer, None
        try:
            producer.flush(timeout=timeout)
        except Exception as exc:  # callers that must know flush() before closing
            logger.warning("closing the producer: unsent messages may be lost (%r)", exc)
        finally:
            producer.close(timeout=timeout)

    def __enter__(self) -> JsonProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
