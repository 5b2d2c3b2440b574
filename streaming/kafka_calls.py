"""kafka-python calls that may wait longer than their caller can: bounded, stoppable, cleaned up.

kafka-python 3 waits for some answers without a limit of its own (metadata after a broker went
away) or with one too long for a consumer thread (a 30 s bootstrap), and leaves what a client
opened (an IO thread, a selector) open when its bootstrap fails. The runner, the topic probe and
the producer build their clients here, and wait for them with `core.bounded_call.call_within`.

A consumer thread must poll again within max_poll_interval_ms, or its group drops it. The
runner gives each poll cycle one `time_budget`; every wait of `JsonProducer` (send, flush,
close) and `TopicProbe` on that thread, the processor's own included, ends by then (a
`Deadline`), whatever its own limit. Those waits also add up in the budget (`kafka_waited_s`),
so the runner can tell a cycle that a slow broker used up from one its processing did.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

from kafka import KafkaConsumer, KafkaProducer
from kafka.net.compat import KafkaNetClient

C = TypeVar("C")
logger = logging.getLogger(__name__)

# When the innermost `time_budget` of this thread (or asyncio task) ends, on time.monotonic().
_budget_ends: ContextVar[float | None] = ContextVar("threefold_kafka_budget_ends", default=None)
# Seconds the outermost `time_budget` of this thread has waited for the broker so far.
_budget_waited: ContextVar[list[float] | None] = ContextVar(
    "threefold_kafka_budget_waited", default=None
)


@dataclass(frozen=True)
class Deadline:
    """When one bounded wait (or several in a row) must be over: `limit_s` after it began,
    cut to the end of the current `time_budget`."""

    ends: float  # time.monotonic(); math.inf: no limit
    limit_s: float  # what the wait was given in all (for messages)

    @classmethod
    def after(cls, limit_s: float | None) -> Deadline:
        """`limit_s` from now (None: no limit of its own), or the current budget's end if
        that comes first."""
        now = time.monotonic()
        ends = math.inf if limit_s is None else now + max(0.0, limit_s)
        budget_ends = _budget_ends.get()
        if budget_ends is not None:
            ends = min(ends, budget_ends)
        return cls(ends, max(0.0, ends - now))

    @property
    def bounded(self) -> bool:
        return self.ends != math.inf

    @property
    def limit_text(self) -> str:
        """The limit for a message: "2.5 s"."""
        return f"{round(self.limit_s, 2):g} s"

    def left_s(self) -> float:
        """Seconds left (0 once it passed; math.inf without a limit)."""
        return max(0.0, self.ends - time.monotonic())

    def left_ms(self) -> int:
        """Whole milliseconds left, for kafka-python's `*_ms` settings (0 once it passed)."""
        return int(min(self.left_s(), 1e9) * 1000)

    @property
    def passed(self) -> bool:
        return time.monotonic() >= self.ends


def budget_spent() -> bool:
    """Whether the current `time_budget` of this thread ended (False outside one)."""
    ends = _budget_ends.get()
    return ends is not None and time.monotonic() >= ends


def kafka_waited_s() -> float:
    """Seconds this thread's current `time_budget` has spent waiting for the broker in
    `waiting_for_kafka` blocks so far (0 outside one)."""
    waited = _budget_waited.get()
    return 0.0 if waited is None else waited[0]


@contextlib.contextmanager
def waiting_for_kafka() -> Iterator[None]:
    """Count the block's time as waiting for the broker, in the current `time_budget`."""
    started = time.monotonic()
    try:
        yield
    finally:
        waited = _budget_waited.get()
        if waited is not None:
            waited[0] += time.monotonic() - started


@contextlib.contextmanager
def time_budget(seconds: float) -> Iterator[Deadline]:
    """One deadline, `seconds` from now, for every wait of `JsonProducer` and `TopicProbe`
    that this thread makes inside the block: each waits its own limit at most and never past
    the deadline, which it yields. A budget opened inside another ends by the outer one's end,
    and its waits count in the outer one's `kafka_waited_s`. Other threads (kafka-python's own,
    a `call_within` helper) do not see it."""
    deadline = Deadline.after(seconds)
    token = _budget_ends.set(deadline.ends)
    waited = _budget_waited.set(_budget_waited.get() or [0.0])
    try:
        yield deadline
    finally:
        _budget_waited.reset(waited)
        _budget_ends.reset(token)


def new_client(kind: Callable[..., C], config: Mapping[str, Any]) -> C:
    """`kind(**config)` for a kafka-python client class (KafkaConsumer, KafkaProducer,
    KafkaAdminClient), closing the network clients it made when the constructor fails.

    kafka-python 3 gives up on them there: a consumer's or an admin client's IO thread, started
    before the bootstrap, keeps running when the bootstrap fails (KafkaTimeoutError), and a
    producer's selector (an epoll and a socket pair) stays open until the garbage collector
    finds it; one more of each for every client that could not connect, for as long as the
    broker stays away."""
    clients: list[Any] = []
    make_client = config.get("kafka_client") or KafkaNetClient

    def client(**kwargs: Any) -> Any:
        clients.append(make_client(**kwargs))
        return clients[-1]

    try:
        return kind(**{**config, "kafka_client": client})
    except BaseException:
        for each in clients:
            with contextlib.suppress(Exception):
                each.close()
        raise


def new_consumer(config: Mapping[str, Any]) -> KafkaConsumer:
    """`KafkaConsumer(**config)` through `new_client`."""
    return new_client(KafkaConsumer, config)


def close_unwanted_consumer(consumer: KafkaConsumer | None) -> None:
    """Close a consumer its caller stopped waiting for (a `late` for `call_within`): one that
    connected too late, or one whose call was given up on."""
    if consumer is not None:
        with contextlib.suppress(Exception):
            consumer.close(autocommit=False)


def close_unwanted_producer(producer: KafkaProducer | None) -> None:
    """Close a producer its caller stopped waiting for (a `late` for `call_within`): one that
    connected too late. It has sent nothing."""
    if producer is not None:
        with contextlib.suppress(Exception):
            producer.close(timeout=0)


def close_producer(producer: KafkaProducer, deadline: Deadline, *, drop_unsent: bool) -> None:
    """Close a KafkaProducer by `deadline`; with `drop_unsent`, without waiting for records the
    broker has not acknowledged (their futures fail).

    kafka-python 3's `close(timeout)` flushes first, waiting up to `timeout` for each batch,
    and when the broker does not answer in time raises KafkaTimeoutError and leaves the
    producer open (its sender thread and connections): its sender is force-closed first, which
    fails what it holds and ends it."""
    sender = getattr(producer, "_sender", None)
    if drop_unsent and sender is not None:
        sender.force_close()
        sender.join(min(deadline.left_s(), threading.TIMEOUT_MAX))
    try:
        producer.close(timeout=min(deadline.left_s(), threading.TIMEOUT_MAX))
    except Exception as exc:  # e.g. a batch sent meanwhile and not acknowledged in time
        if sender is not None:
            sender.force_close()
        logger.warning("closing a Kafka producer did not finish in time (%r)", exc)
