"""Micro-batch assembly and failure isolation, without a broker."""

from __future__ import annotations

import pytest

from threefold.core.errors import ServiceError
from threefold.streaming.batching import (
    GROW_AFTER_BATCHES,
    BatchLimit,
    MicroBatcher,
    RetryPolicy,
    process_batch,
)
from threefold.streaming.messages import BatchResult, Message, Output, ProcessingError


def _msg(offset: int, value: bytes = b'{"text": "x"}', partition: int = 0) -> Message:
    return Message("in", partition, offset, None, value, 1_700_000_000_000 + offset)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Upper:
    """Uppercases `text`; a message whose text is in `bad` fails the whole batch."""

    def __init__(self, bad: set[str] = frozenset(), exc: type[Exception] = ProcessingError):
        self.bad = bad
        self.exc = exc
        self.calls: list[list[int]] = []

    def process(self, batch: list[Message]) -> BatchResult:
        self.calls.append([m.offset for m in batch])
        outputs, failed = [], []
        for m in batch:
            try:
                text = m.json()["text"]
            except ProcessingError as exc:
                failed.append((m, exc.reason))
                continue
            if text in self.bad:
                raise self.exc(f"cannot handle {text!r}")
            outputs.append(Output("out", {"text": text.upper(), "offset": m.offset}))
        return BatchResult(outputs, failed)


def test_batch_is_due_when_full() -> None:
    batcher = MicroBatcher(3, 1000, clock=Clock())
    batcher.add([_msg(0), _msg(1)])
    assert not batcher.due()
    assert batcher.room == 1
    batcher.add([_msg(2)])
    assert batcher.due()
    assert [m.offset for m in batcher.take()] == [0, 1, 2]
    assert len(batcher) == 0 and not batcher.due()


def test_batch_is_due_after_max_wait_from_its_first_message() -> None:
    clock = Clock()
    batcher = MicroBatcher(100, 200, idle_poll_ms=100, clock=clock)
    assert batcher.poll_timeout_ms() == 100  # idle: short polls keep stop() responsive
    batcher.add([_msg(0)])
    clock.now += 0.15
    batcher.add([_msg(1)])
    assert not batcher.due()
    assert batcher.poll_timeout_ms() == 50  # never sleeps past the batch deadline
    clock.now += 0.06
    assert batcher.due()
    assert batcher.poll_timeout_ms() == 0


def test_drop_removes_revoked_messages_and_keeps_the_rest() -> None:
    batcher = MicroBatcher(10, 1000, clock=Clock())
    batcher.add([_msg(0, partition=0), _msg(0, partition=1), _msg(1, partition=0)])
    dropped = batcher.drop(lambda m: m.partition != 0)
    assert [(m.partition, m.offset) for m in dropped] == [(0, 0), (0, 1)]
    assert [(m.partition, m.offset) for m in batcher.pending] == [(1, 0)]


def test_good_batch_is_processed_once() -> None:
    processor = Upper()
    outcome = process_batch(processor, [_msg(0), _msg(1)], RetryPolicy())
    assert processor.calls == [[0, 1]]
    assert [o.value for o in outcome.outputs] == [
        b'{"text":"X","offset":0}',
        b'{"text":"X","offset":1}',
    ]
    assert outcome.failures == [] and outcome.retries == 0


def test_rejected_messages_become_failures_with_their_reason() -> None:
    outcome = process_batch(Upper(), [_msg(0), _msg(1, b"\xff\xfe")], RetryPolicy())
    assert len(outcome.outputs) == 1
    [failure] = outcome.failures
    assert failure.message.offset == 1
    assert failure.error_type == "rejected"
    assert "not UTF-8" in failure.reason


def test_non_retriable_error_isolates_the_bad_message_without_retrying() -> None:
    processor = Upper(bad={"poison"})
    sleeps: list[float] = []
    batch = [_msg(0), _msg(1, b'{"text": "poison"}'), _msg(2)]
    outcome = process_batch(processor, batch, RetryPolicy(max_retries=3), sleep=sleeps.append)
    assert sleeps == []
    assert processor.calls == [[0, 1, 2], [0], [1], [2]]
    assert [f.message.offset for f in outcome.failures] == [1]
    assert outcome.failures[0].error_type == "ProcessingError"
    assert outcome.failures[0].reason == "cannot handle 'poison'"
    assert len(outcome.outputs) == 2


def test_other_errors_are_retried_with_backoff_then_isolated() -> None:
    processor = Upper(bad={"poison"}, exc=KeyError)
    sleeps: list[float] = []
    batch = [_msg(0), _msg(1, b'{"text": "poison"}')]
    policy = RetryPolicy(max_retries=3, backoff_ms=100, max_backoff_ms=250)
    outcome = process_batch(processor, batch, policy, sleep=sleeps.append)
    assert sleeps == [0.1, 0.2, 0.25]
    assert processor.calls == [[0, 1]] * 4 + [[0], [1]]
    assert [(f.message.offset, f.error_type) for f in outcome.failures] == [(1, "KeyError")]
    assert outcome.retries == 3


def test_a_transient_error_that_clears_loses_nothing() -> None:
    class Flaky(Upper):
        def process(self, batch: list[Message]) -> BatchResult:
            if not self.calls:
                self.calls.append([])
                raise ProcessingError("model server busy", retriable=True)
            return super().process(batch)

    outcome = process_batch(Flaky(), [_msg(0), _msg(1)], RetryPolicy(), sleep=lambda _s: None)
    assert len(outcome.outputs) == 2 and outcome.failures == [] and outcome.retries == 1


def test_a_service_error_is_raised_at_once_not_retried_nor_dead_lettered() -> None:
    """Each try waited out the dependency's timeout (Redis: 5 s) on the consumer thread, past
    max_poll_interval_ms; the runner backs off instead, without holding the thread."""
    processor = Upper(bad={"x"}, exc=ServiceError)
    sleeps: list[float] = []
    with pytest.raises(ServiceError, match="cannot handle"):
        process_batch(processor, [_msg(0)], RetryPolicy(max_retries=2), sleep=sleeps.append)
    assert len(processor.calls) == 1 and sleeps == []

    def applied() -> BatchResult:
        raise ServiceError("state store is down")

    with pytest.raises(ServiceError, match="state store is down"):
        process_batch(processor, [_msg(0)], RetryPolicy(max_retries=2), first_attempt=applied)
    assert len(processor.calls) == 1  # a prepared batch's apply is not retried with process


def test_an_output_that_is_not_json_fails_only_its_message() -> None:
    class Sets(Upper):
        def process(self, batch: list[Message]) -> BatchResult:
            return BatchResult(
                [Output("out", {"v": {1, 2}} if m.offset == 1 else {"v": 1}) for m in batch]
            )

    outcome = process_batch(Sets(), [_msg(0), _msg(1)], RetryPolicy(max_retries=0))
    assert len(outcome.outputs) == 1
    assert [(f.message.offset, f.error_type) for f in outcome.failures] == [(1, "DataError")]
    assert "not JSON-serializable" in outcome.failures[0].reason


def test_returning_something_else_than_a_batch_result_is_reported() -> None:
    class Wrong:
        def process(self, batch: list[Message]) -> list:
            return []

    outcome = process_batch(Wrong(), [_msg(0)], RetryPolicy(max_retries=0))
    assert outcome.failures[0].error_type == "TypeError"
    assert "expected a BatchResult" in outcome.failures[0].reason


def test_a_prepared_first_attempt_replaces_process_once() -> None:
    processor = Upper()
    prepared = BatchResult([Output("out", {"text": "READY"})])
    outcome = process_batch(processor, [_msg(0)], RetryPolicy(), first_attempt=lambda: prepared)
    assert processor.calls == []  # the batch was not processed again
    assert outcome.outputs[0].value == b'{"text":"READY"}'


def test_a_failing_first_attempt_is_retried_with_process() -> None:
    def applied() -> BatchResult:
        raise ProcessingError("stale state", retriable=True)

    processor = Upper()
    outcome = process_batch(
        processor, [_msg(0)], RetryPolicy(), first_attempt=applied, sleep=lambda _s: None
    )
    assert processor.calls == [[0]]
    assert len(outcome.outputs) == 1 and outcome.retries == 1


def test_the_batch_limit_halves_down_to_one_when_cycles_run_out_of_time() -> None:
    limit = BatchLimit(max_batch=64, budget_s=5.0)
    sizes = []
    for _ in range(8):
        limit.halve()
        sizes.append(limit.value)
    assert sizes == [32, 16, 8, 4, 2, 1, 1, 1]


def test_the_batch_limit_doubles_back_after_full_batches_that_fit_with_time_to_spare() -> None:
    limit = BatchLimit(max_batch=8, budget_s=5.0)
    limit.halve()
    limit.halve()
    assert limit.value == 2
    for _ in range(GROW_AFTER_BATCHES - 1):
        assert not limit.committed(2, budget_left_s=4.0)
    assert not limit.committed(1, budget_left_s=4.0)  # a short batch tells nothing
    assert limit.committed(2, budget_left_s=4.0) and limit.value == 4
    for _ in range(GROW_AFTER_BATCHES - 1):
        limit.committed(4, budget_left_s=4.0)
    assert not limit.committed(4, budget_left_s=2.0)  # tight: twice as many would not fit
    assert limit.value == 4
    for _ in range(GROW_AFTER_BATCHES):
        limit.committed(4, budget_left_s=2.5)
    assert limit.value == 8
    for _ in range(GROW_AFTER_BATCHES * 2):
        assert not limit.committed(8, budget_left_s=5.0)
    assert limit.value == 8  # never past max_batch


def test_a_halving_restarts_the_count_towards_growing() -> None:
    limit = BatchLimit(max_batch=8, budget_s=5.0)
    limit.halve()
    for _ in range(GROW_AFTER_BATCHES - 1):
        limit.committed(4, budget_left_s=4.0)
    limit.halve()
    for _ in range(GROW_AFTER_BATCHES - 1):
        assert not limit.committed(2, budget_left_s=4.0)
    assert limit.committed(2, budget_left_s=4.0) and limit.value == 4
