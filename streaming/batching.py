"""Broker-free parts of the consumer runner: micro-batch assembly, its size limit and failure
isolation."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from threefold.core.errors import ServiceError
from threefold.streaming.dead_letter import REJECTED, error_reason
from threefold.streaming.messages import (
    BatchProcessor,
    BatchResult,
    Headers,
    Message,
    Output,
    ProcessingError,
)
from threefold.streaming.producer import encode_json

logger = logging.getLogger(__name__)


class MicroBatcher:
    """Collects messages until `max_batch` are buffered or `max_wait_ms` passed since the first."""

    def __init__(
        self,
        max_batch: int,
        max_wait_ms: int,
        *,
        idle_poll_ms: int = 100,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_batch = max_batch
        self.max_wait_ms = max_wait_ms
        self.idle_poll_ms = idle_poll_ms
        self._clock = clock
        self.pending: list[Message] = []
        self._started: float | None = None

    def __len__(self) -> int:
        return len(self.pending)

    @property
    def room(self) -> int:
        """How many more messages fit in the current batch."""
        return max(0, self.max_batch - len(self.pending))

    def add(self, messages: list[Message]) -> None:
        if messages and self._started is None:
            self._started = self._clock()
        self.pending.extend(messages)

    def due(self) -> bool:
        """True when the batch is full or its first message waited max_wait_ms."""
        if not self.pending:
            return False
        return len(self.pending) >= self.max_batch or self._waited_ms() >= self.max_wait_ms

    def poll_timeout_ms(self) -> int:
        """How long the next poll may block without delaying a due batch."""
        if self._started is None:
            return min(self.idle_poll_ms, max(self.max_wait_ms, 1))
        return max(0, min(self.idle_poll_ms, math.ceil(self.max_wait_ms - self._waited_ms())))

    def take(self) -> list[Message]:
        """Remove and return the buffered batch."""
        batch, self.pending = self.pending, []
        self._started = None
        return batch

    def drop(self, keep: Callable[[Message], bool]) -> list[Message]:
        """Remove the buffered messages for which `keep` is False; returns them."""
        dropped = [m for m in self.pending if not keep(m)]
        self.pending = [m for m in self.pending if keep(m)]
        if not self.pending:
            self._started = None
        return dropped

    def _waited_ms(self) -> float:
        return 0.0 if self._started is None else (self._clock() - self._started) * 1000


GROW_AFTER_BATCHES = 8  # full batches in a row that fit with room to spare, before doubling
GROW_SPARE_SHARE = 0.5  # of the poll cycle's budget left at the commit: twice the batch fits


class BatchLimit:
    """How many messages the runner takes into one batch: `max_batch` until a poll cycle runs
    out of its time budget (`budget_s`), then halved each time (down to 1), so that a batch
    whose processing alone outlasts the budget is split until one fits; doubled back (up to
    `max_batch`) after GROW_AFTER_BATCHES full batches in a row were committed with at least
    GROW_SPARE_SHARE of their cycle's budget left, so a batch twice as big would fit too."""

    def __init__(self, max_batch: int, budget_s: float) -> None:
        self.max_batch = max_batch
        self.budget_s = budget_s
        self.value = max_batch
        self._fitting = 0  # full batches in a row committed with time to spare

    def halve(self) -> None:
        """A poll cycle ran out of its time budget."""
        self.value = max(1, self.value // 2)
        self._fitting = 0

    def committed(self, size: int, budget_left_s: float) -> bool:
        """A batch of `size` messages was committed with `budget_left_s` of its cycle's budget
        left; True when that doubled the limit. A smaller batch than the limit (the stream ran
        dry, or it was taken before the limit grew) tells nothing and changes nothing."""
        if self.value >= self.max_batch or size < self.value:
            return False
        if budget_left_s < self.budget_s * GROW_SPARE_SHARE:
            self._fitting = 0
            return False
        self._fitting += 1
        if self._fitting < GROW_AFTER_BATCHES:
            return False
        self.value = min(self.max_batch, self.value * 2)
        self._fitting = 0
        return True


@dataclass(frozen=True)
class EncodedOutput:
    topic: str
    value: bytes
    key: str | None
    timestamp_ms: int | None
    headers: Headers = ()


@dataclass(frozen=True)
class Failure:
    """A message bound for the dead-letter topic."""

    message: Message
    reason: str
    error_type: str


@dataclass
class BatchOutcome:
    outputs: list[EncodedOutput] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    retries: int = 0


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff: backoff_ms, 2*backoff_ms, ... capped at max_backoff_ms."""

    max_retries: int = 3
    backoff_ms: int = 200
    max_backoff_ms: int = 2000

    def delay_s(self, attempt: int) -> float:
        return min(self.max_backoff_ms, self.backoff_ms * 2 ** max(0, attempt - 1)) / 1000


def process_batch(
    processor: BatchProcessor,
    batch: list[Message],
    policy: RetryPolicy,
    *,
    first_attempt: Callable[[], BatchResult] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> BatchOutcome:
    """Run `processor` on `batch` with retries and per-message isolation (see runner docs).

    `first_attempt` replaces `processor.process(batch)` for the first try only (the runner passes
    `apply` of a batch prepared ahead); retries call `process`.
    ServiceError (a dependency is down) is raised at once, not retried here: each try would wait
    out the dependency's timeout on the consumer thread, past max_poll_interval_ms, while the
    runner backs off without holding the thread (see its docstring). Other exceptions are retried
    (a non-retriable ProcessingError is not), then each message is processed alone and the ones
    that still fail become Failures named after the exception class.
    """
    attempt = 0
    while True:
        try:
            if attempt == 0 and first_attempt is not None:
                outcome = _encode(first_attempt(), batch)
            else:
                outcome = _call(processor, batch)
            outcome.retries = attempt
            return outcome
        except ServiceError:
            raise
        except ProcessingError as exc:
            last: Exception = exc
            if not exc.retriable or attempt >= policy.max_retries:
                break
        except Exception as exc:
            last = exc
            if attempt >= policy.max_retries:
                break
            logger.warning("batch of %d failed (attempt %d): %r", len(batch), attempt + 1, exc)
        attempt += 1
        sleep(policy.delay_s(attempt))
    if len(batch) == 1:
        reason, error_type = error_reason(last)
        return BatchOutcome(failures=[Failure(batch[0], reason, error_type)], retries=attempt)
    logger.warning(
        "batch of %d keeps failing (%r); processing its messages one by one", len(batch), last
    )
    outcome = BatchOutcome(retries=attempt)
    for message in batch:
        try:
            single = _call(processor, [message])
        except ServiceError:
            raise
        except Exception as exc:
            reason, error_type = error_reason(exc)
            outcome.failures.append(Failure(message, reason, error_type))
            continue
        outcome.outputs.extend(single.outputs)
        outcome.failures.extend(single.failures)
    return outcome


def _call(processor: BatchProcessor, batch: list[Message]) -> BatchOutcome:
    result = processor.process(batch)
    if not isinstance(result, BatchResult):
        raise TypeError(
            f"{type(processor).__name__}.process returned {type(result).__name__}; "
            "expected a BatchResult"
        )
    return _encode(result, batch)


def _encode(result: BatchResult, batch: list[Message]) -> BatchOutcome:
    if not isinstance(result, BatchResult):
        raise TypeError(f"a processor returned {type(result).__name__}; expected a BatchResult")
    outcome = BatchOutcome()
    for output in result.outputs:
        if not isinstance(output, Output):
            raise TypeError(f"outputs must be Output objects, found {type(output).__name__}")
        value = encode_json(output.value)  # a value that is not JSON fails here, per message
        outcome.outputs.append(
            EncodedOutput(output.topic, value, output.key, output.timestamp_ms, output.headers)
        )
    in_batch = {(m.topic, m.partition, m.offset) for m in batch}
    for message, reason in result.failed:
        if (message.topic, message.partition, message.offset) not in in_batch:
            raise ValueError(
                f"failed message {message.topic}[{message.partition}]@{message.offset} "
                "is not part of the batch"
            )
        outcome.failures.append(Failure(message, str(reason), REJECTED))
    return outcome
