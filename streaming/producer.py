"""JsonProducer: JSON values to Kafka, with send failures surfaced at flush(), and a Kafka
producer that cannot recover replaced by a new one."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from typing import Any

from kafka import errors as kafka_errors
from prometheus_client import CollectorRegistry, Counter, Gauge

from threefold.core.bounded_call import call_within
from threefold.core.errors import ConfigError, DataError, ServiceError
from threefold.streaming.connections import KafkaTarget, as_kafka_settings
from threefold.streaming.kafka_calls import (
    Deadline,
    close_producer,
    close_unwanted_producer,
    new_client,
    waiting_for_kafka,
)
from threefold.streaming.kafka_config import producer_config

logger = logging.getLogger(__name__)
CLOSE_GRACE_S = 0.5  # of close()'s timeout, kept from the flush for ending what still waits
# Send failures that say the broker no longer accepts this producer's id or sequence (a broker
# restarted or lost its state, the id expired or was fenced): kafka-python's idempotent
# producer does not recover from them (a fatal error follows), a new producer does.
PRODUCER_STATE_ERRORS = (
    kafka_errors.UnknownProducerIdError,
    kafka_errors.OutOfOrderSequenceNumberError,
    kafka_errors.InvalidProducerEpochError,
    kafka_errors.ProducerFencedError,
)
# Flushes in a row whose sends all failed, none acknowledged between, after which the producer
# is replaced whatever the errors were: a state kafka-python does not report stays no longer.
REPLACE_AFTER_FAILED_FLUSHES = 3


def encode_json(value: Any) -> bytes:
    """Compact UTF-8 JSON; DataError when the value is not JSON-serializable."""
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise DataError(
            f"message value is not JSON-serializable ({exc}); convert it to dict/list/str/number"
        ) from exc


class ProducerMetrics:
    """Prometheus metrics of JsonProducers, by their `name`, on a registry the caller owns (one
    instance per registry, shared by its producers)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.replaced = Counter(
            "threefold_stream_producer_replaced_total",
            "Kafka producers closed and opened anew because they could not send any more (the "
            "broker forgot or fenced the producer id, e.g. after a broker restart).",
            ["producer"],
            registry=self.registry,
        )
        self.failing = Gauge(
            "threefold_stream_producer_failing",
            "1 while the producer's sends fail or go unanswered (nothing it sends reaches "
            "Kafka), 0 once one is acknowledged.",
            ["producer"],
            registry=self.registry,
        )


class JsonProducer:
    """Sends dicts as JSON to Kafka. Cheap to construct; connects on first use.

    Failed sends are collected and raised (ServiceError) by the next `flush()`, so a caller that
    flushes before committing offsets never commits past a lost message.

    A Kafka producer that cannot send any more is closed, and the next send opens a new one:
    one in kafka-python's fatal state, one whose sends the broker refused for its producer id or
    sequence (`PRODUCER_STATE_ERRORS`: a restarted broker forgot the id, or it expired or was
    fenced), or one with REPLACE_AFTER_FAILED_FLUSHES flushes in a row whose sends all failed.
    Without this an idempotent producer fails every send until the process restarts. Each
    replacement is a warning (`"event": "kafka_producer_replaced"`) and counts in `replacements`
    and, with `metrics`, in threefold_stream_producer_replaced_total{producer=name}; its
    threefold_stream_producer_failing is 1 while sends fail or go unanswered.

    Every wait has a limit, cut to the end of the calling thread's `kafka_calls.time_budget`:
    a send waits up to `max_block_ms` in all (connecting, then the topic's metadata), a flush
    or a close up to its `timeout`.
    """

    def __init__(
        self,
        kafka: KafkaTarget,
        *,
        name: str = "producer",
        metrics: ProducerMetrics | None = None,
        **cfg: object,
    ) -> None:
        settings = as_kafka_settings(kafka)
        self.bootstrap = settings.bootstrap_servers
        self.name = name
        self.replacements = 0  # Kafka producers replaced because they could not send any more
        self._config = {**settings.client_config(), **producer_config(**cfg)}
        self._max_block_s = float(str(self._config["max_block_ms"])) / 1000
        self._metrics = metrics
        self._producer: Any = None
        self._errors: list[tuple[Any, BaseException]] = []  # (the producer that failed, error)
        self._unanswered = 0  # sends the broker has not answered yet
        self._failed_flushes = 0  # in a row, all of their sends failed
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()

    def _client(self, deadline: Deadline) -> Any:
        """The producer, connected first if need be by `deadline` (ServiceError if not); one
        that cannot send any more is replaced first."""
        if self._producer is not None:
            fatal = _fatal_error(self._producer)
            if fatal is not None:
                self._replace(f"kafka-python's producer is in a fatal state ({fatal!r})")
        if self._producer is None:
            from kafka import KafkaProducer
            from kafka.errors import KafkaError

            if deadline.passed:
                raise ServiceError(
                    f"no time left to connect a Kafka producer to {self.bootstrap!r}: the "
                    "caller's time budget is spent; try again"
                )
            bootstrap_ms = float(str(self._config.get("bootstrap_timeout_ms", 30_000)))
            config = {**self._config, "bootstrap_timeout_ms": min(bootstrap_ms, deadline.left_ms())}
            try:
                with waiting_for_kafka():
                    self._producer = call_within(
                        lambda: new_client(KafkaProducer, config),
                        timeout_s=deadline.left_s() if deadline.bounded else None,
                        late=close_unwanted_producer,
                        name="threefold-producer-connect",
                    )
            except ValueError as exc:
                raise ConfigError(f"invalid Kafka producer settings: {exc}") from exc
            except (KafkaError, TimeoutError) as exc:
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
        """Queue a pre-encoded value, with Kafka record `headers` (name, value) if any.
        ServiceError when the broker cannot be connected to, kafka-python's KafkaTimeoutError
        when it does not list the topic, within `max_block_ms` (cut to the time budget)."""
        key_bytes = key.encode("utf-8") if isinstance(key, str) else key
        deadline = Deadline.after(self._max_block_s)
        client = self._client(deadline)
        try:
            with self._send_lock, waiting_for_kafka():  # for the topic's metadata, if need be
                client.config["max_block_ms"] = deadline.left_ms()  # read by each send()
                future = client.send(
                    topic,
                    value=value,
                    key=key_bytes,
                    timestamp_ms=timestamp_ms,
                    headers=list(headers) or None,
                )
        except kafka_errors.KafkaTimeoutError:  # no metadata in time: the broker is away
            self._set_failing(True)
            raise
        except kafka_errors.IllegalStateError as exc:  # closed under us: never sends again
            self._replace(f"the Kafka producer refused a send ({exc!r})")
            raise
        with self._lock:
            self._unanswered += 1
        future.add_callback(self._acknowledged)
        future.add_errback(self._record_error, client)
        future.add_both(self._answered)
        return future

    def _acknowledged(self, _metadata: object) -> None:
        with self._lock:
            self._failed_flushes = 0
        self._set_failing(False)

    def _record_error(self, client: Any, exc: BaseException) -> None:
        with self._lock:
            self._errors.append((client, exc))

    def _answered(self, _result: object) -> None:
        with self._lock:
            self._unanswered -= 1

    def _set_failing(self, failing: bool) -> None:
        if self._metrics is not None:
            self._metrics.failing.labels(producer=self.name).set(1 if failing else 0)

    def _after_failed_sends(self, errors: list[tuple[Any, BaseException]]) -> None:
        """Replace the producer when the failures of its own sends say it cannot recover."""
        own = [exc for client, exc in errors if client is self._producer]
        if not own:
            return  # failures of a producer already replaced
        with self._lock:
            self._failed_flushes += 1
            failed_flushes = self._failed_flushes
        refused = next((exc for exc in own if isinstance(exc, PRODUCER_STATE_ERRORS)), None)
        fatal = _fatal_error(self._producer)
        if fatal is not None:
            self._replace(f"kafka-python's producer is in a fatal state ({fatal!r})")
        elif refused is not None:
            self._replace(f"the broker refused its producer id or sequence ({refused!r})")
        elif failed_flushes >= REPLACE_AFTER_FAILED_FLUSHES:
            self._replace(f"{failed_flushes} flushes in a row failed (last: {own[-1]!r})")

    def _replace(self, reason: str) -> None:
        """Close the Kafka producer that cannot send any more (dropping what it still holds:
        those sends fail); the next send opens a new one."""
        with self._send_lock:
            producer, self._producer = self._producer, None
        if producer is None:
            return
        with self._lock:
            self._failed_flushes = 0
        self.replacements += 1
        if self._metrics is not None:
            self._metrics.replaced.labels(producer=self.name).inc()
        logger.warning(
            "the Kafka producer %r for %r cannot send any more: %s; closing it, the next send "
            "opens a new one",
            self.name,
            self.bootstrap,
            reason,
            extra={
                "fields": {
                    "event": "kafka_producer_replaced",
                    "producer": self.name,
                    "reason": reason,
                    "replacements": self.replacements,
                }
            },
        )
        close_producer(producer, Deadline.after(CLOSE_GRACE_S), drop_unsent=True)

    @property
    def unanswered(self) -> int:
        """Messages sent that the broker has not acknowledged (or failed) yet."""
        with self._lock:
            return self._unanswered

    def flush(self, timeout: float | None = 30.0) -> None:
        """Wait until every queued message is acknowledged, `timeout` seconds at most in all
        (None: no limit; cut to the time budget); ServiceError if any was not."""
        deadline = Deadline.after(timeout)
        if self._producer is not None and self.unanswered:
            self._wait_for_answers(self._producer, deadline)
        with self._lock:
            errors, self._errors = self._errors, []
        if errors:
            self._set_failing(True)
            self._after_failed_sends(errors)
            first = errors[0][1]
            raise ServiceError(
                f"{len(errors)} message(s) were not written to Kafka at {self.bootstrap!r}; "
                f"first error: {first!r}"
            ) from first

    def _wait_for_answers(self, producer: Any, deadline: Deadline) -> None:
        """kafka-python's flush waits up to its timeout for each batch in turn: it runs on a
        helper thread, waited for until `deadline`."""
        from kafka.errors import KafkaTimeoutError

        try:
            with waiting_for_kafka():
                if not deadline.bounded:
                    producer.flush()
                elif deadline.passed:
                    raise TimeoutError("no time left")
                else:
                    call_within(
                        lambda: producer.flush(timeout=deadline.left_s()),
                        timeout_s=deadline.left_s(),
                        name="threefold-producer-flush",
                    )
        except (KafkaTimeoutError, TimeoutError) as exc:
            self._set_failing(True)
            raise ServiceError(
                f"Kafka at {self.bootstrap!r} did not acknowledge {self.unanswered} queued "
                f"message(s) within {deadline.limit_text}; is the broker up?"
            ) from exc

    def close(self, timeout: float | None = 10.0) -> None:
        """Flush what is queued, then close, `timeout` seconds at most in all (cut to the time
        budget); what the broker has not acknowledged by then is dropped, with a warning that
        counts it. Never raises for the broker's sake: call flush() first to see errors."""
        if self._producer is None:
            return
        deadline = Deadline.after(timeout)
        grace_s = min(CLOSE_GRACE_S, deadline.left_s() / 4)  # to end a sender that waits
        try:
            self.flush(timeout=deadline.left_s() - grace_s if deadline.bounded else None)
        except ServiceError as exc:
            logger.warning(
                "closing the producer for %r: %s; dropping the %d message(s) not acknowledged",
                self.bootstrap,
                exc,
                self.unanswered,
            )
        finally:
            producer, self._producer = self._producer, None
            close_producer(producer, deadline, drop_unsent=self.unanswered > 0)

    def __enter__(self) -> JsonProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _fatal_error(producer: Any) -> BaseException | None:
    """The error that put kafka-python's producer in its fatal state (it fails every send from
    then on), None when it is not in one (or has no transaction manager: not idempotent)."""
    manager = getattr(producer, "_transaction_manager", None)
    if manager is None or not manager.has_fatal_error():
        return None
    return manager.last_error or kafka_errors.KafkaError("fatal error")
