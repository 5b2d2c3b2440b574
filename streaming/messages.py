"""The records a ConsumerRunner hands to a BatchProcessor, and what the processor returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from threefold.core.untrusted_json import UntrustedJsonError, loads_untrusted


class ProcessingError(Exception):
    """Raised for a message (or batch) that cannot be processed.

    `retriable=False`: the message itself is bad (invalid JSON, missing field): dead-letter it.
    `retriable=True`: a transient problem: the runner retries with backoff before dead-lettering.
    """

    def __init__(self, reason: str, *, retriable: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retriable = retriable


Headers = tuple[tuple[str, bytes], ...]
"""Kafka record headers as (name, value) pairs, in order (e.g. a trace id)."""


@dataclass(frozen=True)
class Message:
    """One consumed Kafka record (a tombstone's value is b"")."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp_ms: int
    headers: Headers = ()

    def text(self) -> str:
        """The value as UTF-8 text; ProcessingError (not retriable) when it is not UTF-8."""
        try:
            return self.value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProcessingError(
                f"value is not UTF-8 text (byte {exc.start}: {exc.reason})"
            ) from exc

    def json(self) -> dict[str, Any]:
        """The value as a JSON object; ProcessingError (not retriable) for anything else."""
        if not self.value:
            raise ProcessingError("empty value; expected a JSON object")
        try:
            value = loads_untrusted(self.text(), what="message")
        except UntrustedJsonError as exc:
            raise ProcessingError(str(exc)) from None
        if not isinstance(value, dict):
            raise ProcessingError(f"expected a JSON object, found {type(value).__name__}")
        return value

    def key_text(self) -> str | None:
        """The key as text (invalid UTF-8 replaced), or None."""
        return None if self.key is None else self.key.decode("utf-8", errors="replace")


@dataclass
class Output:
    """A JSON value to produce; `timestamp_ms` None lets the producer stamp it.

    `headers` are the input message's (`Message.headers`): pass them on so that trace ids
    follow a record through the pipeline.
    """

    topic: str
    value: dict[str, Any]
    key: str | None = None
    timestamp_ms: int | None = None
    headers: Headers = ()


@dataclass
class BatchResult:
    """What a processor made of a batch: outputs, and the messages it rejects with a reason."""

    outputs: list[Output] = field(default_factory=list)
    failed: list[tuple[Message, str]] = field(default_factory=list)


@runtime_checkable
class BatchProcessor(Protocol):
    """Turns a micro-batch of messages into outputs; the runner consumes, produces and commits.

    Optional hooks `on_partitions_revoked(partitions)` / `on_partitions_assigned(partitions)`
    receive sets of kafka TopicPartition; the runner calls them when present (revoked also on a
    graceful stop, not after a failure). They run on kafka-python's IO thread while the runner
    waits in poll/close, never concurrently with `process` or `apply`; keep them short
    (heartbeats wait). An optional `on_idle()` is called on the consumer thread about once a
    second while nothing is buffered or in flight, for time-driven work (closing windows of a
    stream gone quiet); a ServiceError from it, as from `process`, is a dependency outage (the
    runner backs off and tries again; only `runner.DependencyRefused` stops it), other errors
    are logged.
    An optional `on_group_partitions(partitions)` is called on the consumer thread after each
    rebalance with every partition of the subscribed topics, the group's and not only this
    consumer's ({topic: frozenset of partition numbers}, as the broker lists them then); errors
    are handled as on_idle's.
    """

    def process(self, batch: list[Message]) -> BatchResult: ...


@runtime_checkable
class PreparingProcessor(BatchProcessor, Protocol):
    """A BatchProcessor whose work splits into a pure half and a half with effects.

    `prepare(batch)` does the side-effect-free, CPU-heavy part (parsing, model inference) and
    runs on the runner's worker thread, overlapping the previous batch's `apply`, produce, flush
    and commit. It may be discarded unapplied (a rebalance took the partitions), so it must not
    change any state. `apply(batch, prepared)` does the rest (state, outputs) on the consumer
    thread. `process(batch)` must equal `apply(batch, prepare(batch))`; retries use it.
    """

    def prepare(self, batch: list[Message]) -> Any: ...

    def apply(self, batch: list[Message], prepared: Any) -> BatchResult: ...
