"""ConsumerRunner: consume in micro-batches, call a BatchProcessor, produce, then commit.

At-least-once: a batch's offsets are committed only after its outputs and dead letters were
acknowledged by the broker. A crash (or SIGKILL) before that means the batch is read again by the
next consumer of the group, so outputs may repeat but nothing is lost. Every message that cannot be
processed goes to the dead-letter topic with the reason; none is dropped silently.

Pipelining: when the processor is a PreparingProcessor, batch N+1's `prepare` (parsing and model
inference, no side effects) runs on a worker thread while the consumer thread queues batch N's
outputs, waits for the broker to acknowledge them, commits N and polls. `apply(N)` runs before
that, while the worker is idle: CPU work beside the model's threads slows them by more than it
takes. With `prepare_workers` > 1, that many batches are prepared at once (e.g. two workers
with one torch thread each on 2 cores) and applied in order. Everything with an effect happens
on the consumer thread, in order, and is committed before the next poll; a prepared batch whose
partitions are revoked is dropped and read again, like a buffered one.

Failure handling of one batch:
- `BatchResult.failed` entries are dead-lettered with error_type "rejected".
- ProcessingError(retriable=False) raised for the batch: each message is processed alone; those
  that fail are dead-lettered (error_type = the exception class name).
- Any other exception (or a retriable ProcessingError): the batch is retried up to `max_retries`
  times with exponential backoff, then processed message by message as above.
- ServiceError (a dependency such as Redis is down) is not retried within the batch (each try
  would wait out the dependency's timeout on the consumer thread): it is a dependency outage
  at once (below), never dead-lettered.

A dependency outage (a ServiceError other than Kafka's from `process`, `apply`, `on_idle` or
`on_group_partitions`) never stops the runner, however long it lasts: the uncommitted messages
are dropped (each partition is read again from its first uncommitted offset, so nothing is
lost or skipped), the assigned partitions are paused (the consumer goes on polling, so it
stays in its group), and the work is tried again after a backoff (0.5 s doubling, capped at
`max_reconnect_backoff_ms`): with the processor's `on_idle` when it has one (one call, cheaper
than a batch), else with the next batch. Each retry is a warning log line (`"event":
"dependency_retry"`) and counts in threefold_stream_dependency_retries_total;
threefold_stream_dependency_down_since_seconds holds when the outage began (0 without one),
and `"event": "dependency_recovered"` is logged when a retry succeeds. Only a ServiceError that
is also a ConfigError (`DependencyRefused`: the dependency answered and refused the consumer,
such as wrong credentials) stops the runner, without committing: waiting cannot fix it.

Every LAG_INTERVAL_S the runner asks the broker for the assigned partitions' end offsets (one
ListOffsets request, END_OFFSETS_TIMEOUT_S at most; the last known ones stay when it fails,
counted in `stats.end_offsets_failed` and logged once, `"event": "end_offsets_failed"`), and
at once when a poll returns the first records of a partition after a second without any,
before they are processed (a batch's commit recomputes the counts from the ones known,
without asking the broker). Each assigned partition, fetched yet or not, paused or not, then
has its records not processed yet: from its first uncommitted offset while it has records
buffered or in flight, else from its position, to its end offset (or its high watermark, when
a fetch told of a later one). That is the threefold_stream_consumer_lag gauge, and what a
processor's `on_backlog(unread)` hook is handed ({TopicPartition: count, None when not known}),
on the consumer thread; the hook only takes note (the alerts processor: a partition with
records to read is never idle).

A processor with an `on_status(status)` hook is handed a `RunnerStatus` (running,
dependency_down, kafka_down, stopped; the last poll's time) every HEARTBEAT_S while `run()`
runs, at once when the state changes, and once more when `run()` ends. It is called on a
helper thread of its own, so it may block (a Redis that does not answer) without holding up
the consumer thread, and a consumer thread that is stuck shows as a last poll growing old;
its errors are logged, never raised.

Each poll cycle (a poll and the work on what it returned) gets one `kafka_calls.time_budget` of
`poll_cycle_budget_s` (half of max_poll_interval_ms): every send, flush and topic probe made on
the consumer thread in that cycle, the processor's own included, ends by then, so a frozen
broker (a stopped process, an endpoint that accepts and never answers) cannot hold the thread
past max_poll_interval_ms, which would drop it from its group into a rebalance loop. A flush,
send or offset commit that the budget cuts short is logged with `"event":
"poll_cycle_out_of_time"` and counted in threefold_stream_poll_cycles_out_of_time_total, and the
uncommitted batch is read again. So is a commit the group refused after the cycle overran its
budget (past max_poll_interval_ms, the group dropped the consumer).

The budget starts at the poll, and the batch's processing (`process`, or `apply` waiting for its
`prepare`) happens in it: a batch whose processing alone outlasts it (a slower model, a busy
machine, a large max_batch) would run out of time, be read again and run out again, forever.
Which of the two used the budget up decides what follows (`"slow"` in that warning):
- the broker (processing, less the processor's own waits for Kafka, took under
  PROCESSING_OVERRAN_SHARE of the budget; also counted in
  threefold_stream_poll_cycles_broker_slow_total): a Kafka failure (below, reconnecting); a
  smaller batch would not help, so the batch limit stays;
- processing: the batch limit, the most messages the runner takes into one batch, is halved
  (down to 1, logged as `batch_limit` in that warning; the threefold_stream_batch_limit gauge)
  and the uncommitted work is dropped and read again (no reconnect), so no buffered or prepared
  batch is bigger than the limit; polls ask for no more messages than it leaves room for. A
  dropped batch's `prepare` that is running cannot be stopped: it is waited for then, so the
  next batch's does not queue behind it and overrun a second cycle. At a limit of 1 already,
  one message takes longer than the budget: a dependency outage (below; a dependency of the
  processor, such as Redis, answering slowly: `dependency_down`, not `kafka_down`), retried
  with backoff; raise max_poll_interval_ms if the work needs that long. That outage ends
  when a batch commits, not when `on_idle` succeeds (its quick calls may well succeed against
  a dependency that is merely slow), so the backoff keeps growing while the message overruns.
After `batching.GROW_AFTER_BATCHES` (8) full batches in a row committed with half of their
cycle's budget left, it doubles back, up to max_batch (`"event": "batch_limit_raised"`).

`stats` and the processed, failed (dead-lettered) and output metrics count a batch once its
offsets are committed: one whose commit the group refused (a rebalance) is counted by whoever
commits it after reading it again, not twice; one whose commit the budget cut short is counted
if the group's committed offsets show it landed (asked before the next poll or commit; its
messages, dropped to be read again, are then read on after instead), else (or when that
answer does not come) when it is read again and committed.

Kafka itself failing (broker down or restarted, a produce, flush or commit that fails) never
stops the runner: it drops the uncommitted batch, closes consumer and producer, reports
`degraded` (attribute and the threefold_stream_degraded gauge), waits with exponential backoff
(capped at `max_reconnect_backoff_ms`) and reconnects, however long the outage lasts; the
group then resumes from its committed offsets (at-least-once: only uncommitted work repeats).
A stop (or SIGTERM) during the outage ends the runner at once, also while a new consumer
waits for the broker (kafka-python's bootstrap, up to `bootstrap_timeout_ms`). A broker that
goes away while the stream is quiet fails no send, flush or commit, and kafka-python looks for
a group coordinator silently for ever: a group with no reachable coordinator for longer than
`session_timeout_ms` (the group has dropped the member by then anyway) is an outage too.

After each rebalance the runner tells a processor with an `on_group_partitions(partitions)`
hook every partition of the subscribed topics as the broker lists them then ({topic: frozenset
of partition numbers}, empty for a topic the broker does not list): the partitions the group's
assignment divides among its members, this one's and the others'. One metadata request (not
the cache) finds them, so a topic no longer subscribed, or deleted and recreated with fewer
partitions, shows as such. kafka-python waits for that answer without a limit of its own (a
broker gone for a few seconds: for as long as it stays away), so the request runs on a helper
thread and the consumer thread goes on polling and processing meanwhile; the hook runs on the
consumer thread once the answer is in (kafka-python's rebalance callbacks may not block). An
answer still missing after `GROUP_PARTITIONS_WARN_S` is a warning log line (`"event":
"group_partitions_overdue"`); a failed request is a Kafka outage (reconnect, below).

A record kafka-python cannot decode (a header name that is not UTF-8, which other clients write
and the broker accepts) is read once more, then dead-lettered by position (error_type
"CorruptRecordError", no value) and skipped, instead of stalling its partition. It counts
once an offset past it is committed (at once when nothing before it awaits a commit); read
again before that (uncommitted work dropped), it is skipped without a second dead letter.

Dead letters are cut to `max_dead_letter_bytes` (see dead_letter.encode_dead_letter), so an
oversized or binary message cannot make its own dead letter fail. An output too large for the
producer (`max_request_size`) is never sent: the input it came from is dead-lettered instead
(error_type "OutputTooLarge", with the input's topic, partition and offset), and the batch's
other inputs go on (a batch of several is processed again message by message to find it, and
nothing of it is sent before). The processor had applied that input by then: a processor with
state should refuse inputs whose output could be that large (the alerts one limits every field).
Input headers (trace ids) travel with the dead letter; processors pass `Message.headers` on in
`Output.headers`.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for_futures
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

from kafka import ConsumerRebalanceListener, KafkaConsumer, TopicPartition
from kafka import errors as kafka_errors
from kafka.record.default_records import DefaultRecordBatchBuilder
from kafka.structs import OffsetAndMetadata

from threefold.core.bounded_call import call_within
from threefold.core.errors import ConfigError, ServiceError, first_line
from threefold.streaming.batching import (
    BatchLimit,
    BatchOutcome,
    EncodedOutput,
    Failure,
    MicroBatcher,
    RetryPolicy,
    process_batch,
)
from threefold.streaming.connections import KafkaTarget, as_kafka_settings
from threefold.streaming.dead_letter import (
    DEFAULT_MAX_DEAD_LETTER_BYTES,
    MIN_DEAD_LETTER_BYTES,
    encode_dead_letter,
)
from threefold.streaming.kafka_calls import (
    Deadline,
    budget_spent,
    close_unwanted_consumer,
    kafka_waited_s,
    new_consumer,
    time_budget,
)
from threefold.streaming.kafka_config import consumer_config
from threefold.streaming.messages import (
    BatchProcessor,
    BatchResult,
    Message,
    Output,
    PreparingProcessor,
    ProcessingError,
)
from threefold.streaming.metrics import RunnerMetrics
from threefold.streaming.producer import JsonProducer

__all__ = [
    "BatchProcessor",
    "BatchResult",
    "ConsumerRunner",
    "DependencyRefused",
    "KafkaUnavailable",
    "Message",
    "Output",
    "PreparingProcessor",
    "ProcessingError",
    "ProcessingOverran",
    "RunnerStats",
    "RunnerStatus",
]

logger = logging.getLogger(__name__)

LAG_INTERVAL_S = 1.0  # how often the partitions' end offsets are asked for (lag, backlog)
END_OFFSETS_TIMEOUT_S = 0.5  # the most one such request may hold up the consumer thread
IN_FLIGHT_POLL_MS = 5  # poll slice while a prepared batch is still being computed
IDLE_TICK_S = 1.0  # how often a quiet consumer calls the processor's on_idle()
GROUP_PARTITIONS_WARN_S = 10.0  # a rebalance's metadata answer this late is logged as overdue
FIRST_RECONNECT_S = 0.5
RECOVERED_AFTER_S = 60.0  # a connection that lasted this long resets the reconnect backoff
RECORD_OVERHEAD_BYTES = 16_384  # key, headers and batch framing beside a dead letter's value
POLL_CYCLE_BUDGET_SHARE = 0.5  # of max_poll_interval_ms, for the Kafka calls of one poll cycle
# of the cycle's budget: processing that took this much used it up (a smaller batch helps);
# less, and the broker's answers did (a smaller batch does not help)
PROCESSING_OVERRAN_SHARE = 0.5
HEARTBEAT_S = 5.0  # how often a processor's on_status hook hears of the runner's status
DEFAULT_MAX_REQUEST_BYTES = 1_048_576  # kafka-python's max_request_size
_COMMIT_LOST = (
    kafka_errors.CommitFailedError,
    kafka_errors.RebalanceInProgressError,
    kafka_errors.IllegalGenerationError,
    kafka_errors.UnknownMemberIdError,
)


class KafkaUnavailable(ServiceError):
    """The broker cannot be reached or refused a produce, flush or commit: reconnect."""


class ProcessingOverran(ServiceError):
    """Processing, not the broker, used up a poll cycle's time budget. `halved`: the batch
    limit was halved, so the uncommitted work is read again in smaller batches; else it was
    1 already, which is a dependency outage (a dependency of the processor answers slowly)."""

    def __init__(self, message: str, *, halved: bool) -> None:
        super().__init__(message)
        self.halved = halved


class DependencyRefused(ConfigError, ServiceError):
    """A dependency answered and refused the processor (wrong credentials, no permission):
    unlike an outage, waiting does not fix it, so the runner stops (without committing)."""


@dataclass(frozen=True)
class RunnerStatus:
    """What a runner is doing, for a processor's `on_status` hook (times: Unix seconds).

    state: "starting" (no poll yet), "running", "dependency_down" (retrying a dependency
    outage, partitions paused), "kafka_down" (reconnecting) or "stopped" (`run()` returned or
    raised; `reason` then says why when it raised).
    """

    state: str
    group: str
    last_poll_at: float | None  # when a poll last returned (None: none yet)
    down_since: float | None = None  # when the current outage began
    retries: int = 0  # backoffs in the current dependency outage
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def poll_cycle_budget_s(consumer: Mapping[str, Any]) -> float:
    """The time the Kafka calls of one poll cycle (the processor's too) get in all, for a
    consumer with these settings (KafkaConsumer keyword arguments): half of its
    max_poll_interval_ms, the rest left to the processor's other work and the poll."""
    return int(consumer["max_poll_interval_ms"]) / 1000 * POLL_CYCLE_BUDGET_SHARE


@dataclass
class _InFlight:
    """A batch taken from the buffer whose `prepare` runs (or ran) on the worker thread."""

    batch: list[Message]
    prepared: Future
    started: float


@dataclass
class _CommitCutShort:
    """A commit whose answer the poll cycle's budget cut short: it may have landed."""

    offsets: dict[TopicPartition, int]
    account: Callable[[], None]  # counts its batch, once it is known to have landed


@dataclass
class _PartitionsLookup:
    """The metadata request that follows a rebalance, running on a helper thread."""

    answer: Future  # {topic: frozenset of partition numbers}, or kafka-python's error
    started: float
    overdue: bool = False


@dataclass
class _Outage:
    """A dependency other than Kafka failing the processor (see the module docstring)."""

    since: float  # time.time()
    reason: str = ""
    retries: int = 0
    retry_at: float = 0.0  # time.monotonic()
    waiting: bool = True  # partitions paused until retry_at
    # processing overran its budget at a batch limit of 1: only a batch that gets through
    # ends it (on_idle's quick calls may succeed against a dependency that is merely slow)
    overran: bool = False


@dataclass
class RunnerStats:
    """Counts since the runner was built. batches, processed, dead_lettered and outputs count
    committed batches only (as the processed/failed/outputs metrics do): a batch whose commit
    the group refused is counted by whoever commits it when reading it again (commits_failed
    counts the refusals), one whose commit was cut short by the poll cycle's budget is counted
    once it is known to have landed, and a skipped unreadable record once an offset past it
    is committed."""

    batches: int = 0
    processed: int = 0  # committed without a failure
    dead_lettered: int = 0
    outputs: int = 0
    commits_failed: int = 0
    reconnects: int = 0
    end_offsets_failed: int = 0  # requests for the partitions' end offsets that failed


class ConsumerRunner:
    """Moves messages and offsets between Kafka and a BatchProcessor (see module docstring)."""

    def __init__(
        self,
        *,
        kafka: KafkaTarget,
        topics: Sequence[str],
        group_id: str,
        processor: BatchProcessor,
        dead_letter_topic: str,
        max_batch: int = 64,
        max_wait_ms: int = 200,
        max_retries: int = 3,
        metrics_registry: Any = None,
        consumer_overrides: dict[str, Any] | None = None,
        producer_overrides: dict[str, Any] | None = None,
        retry_backoff_ms: int = 200,
        max_backoff_ms: int = 2000,
        prepare_workers: int = 1,
        max_reconnect_backoff_ms: int = 30_000,
        max_dead_letter_bytes: int = DEFAULT_MAX_DEAD_LETTER_BYTES,
    ) -> None:
        topics = list(topics)
        if not topics:
            raise ConfigError("topics is empty; pass at least one topic to consume")
        if dead_letter_topic in topics:
            raise ConfigError(
                f"dead_letter_topic {dead_letter_topic!r} is also an input topic; "
                "use a separate topic, e.g. '<input>.dlq'"
            )
        for name, value, low in (
            ("max_batch", max_batch, 1),
            ("max_wait_ms", max_wait_ms, 0),
            ("max_retries", max_retries, 0),
            ("retry_backoff_ms", retry_backoff_ms, 0),
            ("max_backoff_ms", max_backoff_ms, 0),
            ("prepare_workers", prepare_workers, 1),
            ("max_reconnect_backoff_ms", max_reconnect_backoff_ms, 0),
            ("max_dead_letter_bytes", max_dead_letter_bytes, MIN_DEAD_LETTER_BYTES),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{name} must be an integer >= {low}, found {value!r}")
        self.kafka = as_kafka_settings(kafka)
        self.bootstrap = self.kafka.bootstrap_servers
        self.topics = topics
        self.group_id = group_id
        self.processor = processor
        self.dead_letter_topic = dead_letter_topic
        self.max_batch = max_batch
        self.max_wait_ms = max_wait_ms
        self.prepare_workers = prepare_workers
        self.retry_policy = RetryPolicy(max_retries, retry_backoff_ms, max_backoff_ms)
        self.metrics = RunnerMetrics(metrics_registry)
        self.stats = RunnerStats()
        self._consumer_config = {
            **self.kafka.client_config(),
            **consumer_config(group_id, **(consumer_overrides or {})),
        }
        self.cycle_budget_s = poll_cycle_budget_s(self._consumer_config)
        self.coordinator_lost_after_s = int(str(self._consumer_config["session_timeout_ms"])) / 1000
        self._producer_overrides = dict(producer_overrides or {})
        request_limit = self._producer_overrides.get("max_request_size", DEFAULT_MAX_REQUEST_BYTES)
        self.max_request_bytes = int(str(request_limit))
        # Within the producer's own limit too, or kafka-python refuses the dead letter.
        self.max_dead_letter_bytes = max(
            MIN_DEAD_LETTER_BYTES,
            min(max_dead_letter_bytes, self.max_request_bytes - RECORD_OVERHEAD_BYTES),
        )
        self.max_reconnect_backoff_s = max_reconnect_backoff_ms / 1000
        self.degraded = False
        self._stop = threading.Event()
        self._lock = threading.RLock()
        self._consumer: KafkaConsumer | None = None
        self._producer: JsonProducer | None = None
        self._batcher = MicroBatcher(max_batch, max_wait_ms)
        self._batch_limit = BatchLimit(max_batch, self.cycle_budget_s)
        self.metrics.batch_limit.set(max_batch)
        self._pipelined = isinstance(processor, PreparingProcessor)
        self._worker: ThreadPoolExecutor | None = None
        self._in_flight: deque[_InFlight] = deque()  # oldest first
        self._next_offsets: dict[TopicPartition, int] = {}
        self._unreadable: tuple[TopicPartition, int] | None = None  # read again once, then skip
        # unreadable records dead-lettered and skipped, per partition, until an offset past
        # them is committed (then they count); read again meanwhile, they are skipped at once
        self._skipped: dict[TopicPartition, list[int]] = {}
        self._failed = False
        self._last_lag_update = 0.0
        # monotonic: when a poll last returned records of each partition
        self._last_records_at: dict[TopicPartition, float] = {}
        # each assigned partition's end offset as last known (LAG_INTERVAL_S), for the lag
        # gauge and the processor's on_backlog hook
        self._end_offsets: dict[TopicPartition, int] = {}
        self._end_offsets_failing = False
        self._last_idle_call = time.monotonic()
        self._rebalanced = False  # set on assignment: report the group's partitions
        self._lookup: _PartitionsLookup | None = None  # the group's partitions, being read
        # per partition, the offset to read again from if the uncommitted work is dropped
        self._first_uncommitted: dict[TopicPartition, int] = {}
        self._cut_short: _CommitCutShort | None = None  # to count if it landed
        self._processing_s = 0.0  # this poll cycle's processing, waits for the broker aside
        self._outage: _Outage | None = None
        self._kafka_down_since: float | None = None
        self._kafka_error = ""  # why Kafka is unavailable, while degraded
        self._last_poll_at: float | None = None
        self._coordinator_lost_at: float | None = None  # monotonic; None while one is known
        self._stopped: str | None = None  # why run() ended ("" when stopped), None while running
        self._status_wake = threading.Event()

    # -- control -----------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask `run()` to finish the current batch, commit, close and return (thread-safe); a
        wait for the broker to come back (reconnecting, connecting) ends at once."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def status(self) -> RunnerStatus:
        """What the runner is doing now (thread-safe)."""
        outage, last_poll = self._outage, self._last_poll_at
        if self._stopped is not None:
            return RunnerStatus("stopped", self.group_id, last_poll, reason=self._stopped)
        if self.degraded:
            since, reason = self._kafka_down_since, self._kafka_error
            return RunnerStatus("kafka_down", self.group_id, last_poll, since, reason=reason)
        if outage is not None:
            return RunnerStatus(
                "dependency_down",
                self.group_id,
                last_poll,
                outage.since,
                outage.retries,
                outage.reason,
            )
        state = "starting" if last_poll is None else "running"
        return RunnerStatus(state, self.group_id, last_poll)

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT stop the runner gracefully; a second signal acts as the default would.

        Call from the main thread of the consumer process (entry points, not libraries).
        """

        def handle(signum: int, _frame: Any) -> None:
            logger.info(
                "received %s: finishing the current batch, then stopping",
                signal.Signals(signum).name,
            )
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            self.stop()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)

    # -- main loop ---------------------------------------------------------------------------

    def run(
        self,
        *,
        stop_after: float | None = None,
        stop_when: Callable[[], bool] | None = None,
    ) -> RunnerStats:
        """Consume until stopped (stop(), a signal, `stop_after` seconds, or `stop_when()`).

        On a stop the buffered batch is finished, produced, flushed and committed, then the
        consumer leaves the group. Returns the stats. Raises ServiceError when Kafka or a
        dependency fails for good; the batch in flight is then not committed, so the next
        consumer of the group processes it again.
        """
        deadline = None if stop_after is None else time.monotonic() + stop_after
        outages = 0  # in a row, each within RECOVERED_AFTER_S of reconnecting
        self._stopped = None
        reporting = self._start_status_reports()
        try:
            while True:
                connected_at = time.monotonic()
                try:
                    self._run_connected(deadline, stop_when)
                    return self.stats
                except KafkaUnavailable as exc:
                    if self._should_stop(deadline, stop_when):
                        logger.warning("stopping while Kafka is unavailable (%s)", exc)
                        return self.stats
                    recovered = time.monotonic() - connected_at > RECOVERED_AFTER_S
                    outages = 1 if recovered else outages + 1
                    delay = self._backoff_s(outages)
                    self._kafka_error = first_line(exc)
                    self._set_degraded(True)
                    logger.warning(
                        "Kafka unavailable (%s); uncommitted messages will be read again; "
                        "reconnecting in %.1f s",
                        exc,
                        delay,
                    )
                    self._stop.wait(delay)
        except BaseException as exc:
            self._stopped = f"{type(exc).__name__}: {first_line(exc)}"
            raise
        finally:
            if self._stopped is None:
                self._stopped = ""
            self._stop.clear()
            self._end_status_reports(reporting)

    def _backoff_s(self, attempt: int) -> float:
        """The wait before retry `attempt` (1, 2, ...) after an outage: 0.5 s doubling, capped
        at max_reconnect_backoff_ms."""
        return min(self.max_reconnect_backoff_s, FIRST_RECONNECT_S * 2 ** (attempt - 1))

    def _set_degraded(self, degraded: bool) -> None:
        if degraded and not self.degraded:
            self.stats.reconnects += 1
            self.metrics.reconnects.inc()
            self._kafka_down_since = time.time()
        if degraded != self.degraded:
            self._status_wake.set()
        self.degraded = degraded
        self.metrics.degraded.set(1 if degraded else 0)

    # -- status reports (the processor's on_status hook, on a helper thread) -------------------

    def _start_status_reports(self) -> tuple[threading.Thread, threading.Event] | None:
        hook = getattr(self.processor, "on_status", None)
        if hook is None:
            return None
        done = threading.Event()
        thread = threading.Thread(
            target=self._report_status,
            args=(hook, done),
            name="threefold-runner-status",
            daemon=True,
        )
        thread.start()
        return thread, done

    def _end_status_reports(
        self, reporting: tuple[threading.Thread, threading.Event] | None
    ) -> None:
        """Have the last status (stopped) reported; wait HEARTBEAT_S for it at most."""
        if reporting is None:
            return
        thread, done = reporting
        done.set()
        self._status_wake.set()
        thread.join(HEARTBEAT_S)

    def _report_status(self, hook: Callable[[RunnerStatus], None], done: threading.Event) -> None:
        """Hand `hook` the status every HEARTBEAT_S, at once on a change, and once after
        `done`; a failure is logged once until the hook works again."""
        failing = False
        while True:
            self._status_wake.clear()
            last = done.is_set()
            try:
                hook(self.status())
            except Exception as exc:
                if not failing:
                    logger.warning(
                        "the processor's on_status failed (%r); trying again every %.0f s",
                        exc,
                        HEARTBEAT_S,
                    )
                failing = True
            else:
                failing = False
            if last:
                return
            self._status_wake.wait(HEARTBEAT_S)

    def _run_connected(self, deadline: float | None, stop_when: Callable[[], bool] | None) -> None:
        """One connection's worth of `run()`: open, consume until stopped, close."""
        self._failed = False
        consumer = self._open()
        try:
            while not self._should_stop(deadline, stop_when):
                with time_budget(self.cycle_budget_s):
                    self._processing_s = 0.0
                    with self._lock:  # before the poll would read a landed batch again
                        self._settle_cut_short(consumer)
                    records = self._poll(consumer)
                    self._watch_coordinator(consumer)
                    with self._lock:
                        try:
                            self._cycle(consumer, records)
                        except KafkaUnavailable:
                            raise
                        except ProcessingOverran as exc:
                            if exc.halved:  # read again in smaller batches
                                self._drop_uncommitted(consumer)
                            else:  # at 1 already: a dependency of the processor is slow
                                self._dependency_failed(consumer, exc)
                        except ServiceError as exc:
                            if isinstance(exc, ConfigError):  # refused: waiting cannot fix it
                                raise
                            self._dependency_failed(consumer, exc)
                    self._maybe_update_lag()
            with time_budget(self.cycle_budget_s), self._lock:
                self._processing_s = 0.0
                try:
                    if len(self._batcher):
                        self._start(self._batcher.take())
                    while self._in_flight:
                        self._finish_oldest()
                except ProcessingOverran as exc:  # the next consumer reads it again
                    logger.warning("stopping with the last batch not committed (%s)", exc)
        except BaseException:
            self._failed = True
            raise
        finally:
            self._close()

    def _cycle(self, consumer: KafkaConsumer, records: Mapping[TopicPartition, list[Any]]) -> None:
        """The work of one poll cycle on what the poll returned (none while an outage waits)."""
        if self._outage_waits(consumer, records):
            return
        self._follow_group_partitions(consumer)
        for tp, tp_records in records.items():
            if tp_records:
                self._first_uncommitted.setdefault(tp, tp_records[0].offset)
                self._batcher.add([_to_message(r) for r in tp_records])
        if self._records_resume(records):
            self._maybe_update_lag(force=True)
        if self._batcher.due():
            self._start(self._batcher.take())
        elif self._in_flight and self._in_flight[0].prepared.done():
            self._finish_oldest()
        elif not records and not len(self._batcher) and not self._in_flight:
            self._maybe_idle()

    # -- dependency outages (see the module docstring) -----------------------------------------

    def _dependency_failed(self, consumer: KafkaConsumer, exc: ServiceError) -> None:
        """A dependency failed the processor: drop the uncommitted work, pause the partitions
        and retry after a backoff."""
        outage = self._outage
        if outage is None:
            outage = self._outage = _Outage(since=time.time())
            self.metrics.dependency_down_since.set(outage.since)
            self._status_wake.set()
        outage.retries += 1
        outage.reason = f"{type(exc).__name__}: {first_line(exc)}"
        outage.overran = outage.overran or isinstance(exc, ProcessingOverran)
        delay = self._backoff_s(outage.retries)
        outage.retry_at = time.monotonic() + delay
        outage.waiting = True
        self._drop_uncommitted(consumer)
        consumer.pause(*consumer.assignment())
        self.metrics.dependency_retries.inc()
        logger.warning(
            "a dependency failed (%s): nothing is committed, skipped or dead-lettered; the "
            "uncommitted messages are read again once it answers; retry %d in %.1f s",
            outage.reason,
            outage.retries,
            delay,
            extra={
                "fields": {
                    "event": "dependency_retry",
                    "retry": outage.retries,
                    "delay_s": delay,
                    "down_s": round(time.time() - outage.since, 1),
                    "error": outage.reason,
                    "group": self.group_id,
                }
            },
        )

    def _outage_waits(
        self, consumer: KafkaConsumer, records: Mapping[TopicPartition, list]
    ) -> bool:
        """Whether this cycle waits out a dependency outage (only polling, so the consumer
        stays in its group). When the retry is due, the processor's `on_idle` is the retry
        (a ServiceError from it backs off again); without one, the next batch is. When
        processing overran, on_idle is still called, but only a batch that commits ends the
        outage (a quick on_idle proves nothing then)."""
        outage = self._outage
        if outage is None or not outage.waiting:
            return False
        if records:  # from partitions assigned during the outage: read them again later
            for tp, tp_records in records.items():
                if tp_records:
                    consumer.seek(tp, tp_records[0].offset)
            consumer.pause(*consumer.assignment())
            return True
        if time.monotonic() < outage.retry_at:
            return True
        hook = getattr(self.processor, "on_idle", None)
        outage.waiting = False
        consumer.resume(*consumer.paused())
        if hook is not None:
            self._last_idle_call = time.monotonic()
            _call_hook(hook, f"on_idle failed; trying again in {IDLE_TICK_S:.0f} s")
            self._dependency_back(batch_done=False)
        return False

    def _dependency_back(self, *, batch_done: bool = True) -> None:
        """The processor's work succeeded (a batch, else only its `on_idle`): end the outage,
        if there was one, unless processing overran and no batch has got through since."""
        outage = self._outage
        if outage is None or (outage.overran and not batch_done):
            return
        self._outage = None
        self.metrics.dependency_down_since.set(0)
        self._status_wake.set()
        down_s = round(time.time() - outage.since, 1)
        logger.info(
            "the failing dependency answers again after %.1f s (%d retries); consuming resumes",
            down_s,
            outage.retries,
            extra={
                "fields": {
                    "event": "dependency_recovered",
                    "down_s": down_s,
                    "retries": outage.retries,
                    "group": self.group_id,
                }
            },
        )

    def _drop_uncommitted(self, consumer: KafkaConsumer) -> None:
        """Forget the batches buffered or in flight and read each partition again from its
        first uncommitted offset. A dropped batch's `prepare` that already runs cannot be
        stopped: it is waited for here, or the next batch's would queue behind it on the worker
        and run its poll cycle out of time once more."""
        dropped = [in_flight.prepared for in_flight in self._in_flight]
        self._in_flight.clear()
        wait_for_futures([f for f in dropped if not f.cancel()])
        self._batcher.take()
        assigned = consumer.assignment()
        for tp, offset in self._first_uncommitted.items():
            if tp in assigned:
                consumer.seek(tp, offset)

    def _open(self) -> KafkaConsumer:
        """Connect the consumer and producer. A broker that is away keeps kafka-python's
        consumer waiting (bootstrap_timeout_ms, 30 s by default): it waits on a helper thread,
        so that a stop meanwhile ends the wait at once (KafkaUnavailable, which `run` takes
        for the end when stopping)."""
        try:
            consumer = call_within(
                lambda: new_consumer(self._consumer_config),
                stop=self._stop,
                late=close_unwanted_consumer,
                name="threefold-consumer-open",
            )
        except kafka_errors.KafkaError as exc:
            raise KafkaUnavailable(
                f"cannot connect a Kafka consumer to {self.bootstrap!r} ({exc}); start the broker "
                "or fix KAFKA_BOOTSTRAP_SERVERS / --bootstrap"
            ) from exc
        except TimeoutError as exc:  # only a stop ends the wait early
            raise KafkaUnavailable(
                f"stopped while connecting a Kafka consumer to {self.bootstrap!r}"
            ) from exc
        consumer.subscribe(self.topics, listener=_Listener(self))
        self._consumer = consumer
        self._coordinator_lost_at = None
        if self._pipelined:
            self._worker = ThreadPoolExecutor(
                self.prepare_workers, thread_name_prefix="threefold-prepare"
            )
        self._producer = JsonProducer(self.kafka, **self._producer_overrides)
        if self.degraded:
            logger.info("reconnected to Kafka at %s", self.bootstrap)
            self._set_degraded(False)
        logger.info(
            "consuming %s as group %r (batch <= %d messages / %d ms, dead letters to %r)",
            self.topics,
            self.group_id,
            self._batch_limit.value,
            self.max_wait_ms,
            self.dead_letter_topic,
        )
        return consumer

    def _poll(self, consumer: KafkaConsumer) -> dict[TopicPartition, list[Any]]:
        timeout_ms = self._batcher.poll_timeout_ms()
        if self._in_flight:  # come back soon to apply the oldest once it is prepared
            ready = self._in_flight[0].prepared.done()
            timeout_ms = 0 if ready else min(timeout_ms, IN_FLIGHT_POLL_MS)
        try:
            records = consumer.poll(timeout_ms=timeout_ms, max_records=self._batcher.room)
        except kafka_errors.KafkaError as exc:
            unreadable = isinstance(exc, kafka_errors.CorruptRecordError)
            if unreadable and self._skip_unreadable(consumer, exc):
                return {}
            raise KafkaUnavailable(
                f"consuming {self.topics} from {self.bootstrap!r} failed: {exc!r}"
            ) from exc
        self._last_poll_at = time.time()
        return records

    def _watch_coordinator(self, consumer: KafkaConsumer) -> None:
        """Raise KafkaUnavailable once the group has had no reachable coordinator for longer
        than session_timeout_ms (by then the group has dropped this member anyway): a broker
        that goes away while the stream is quiet is an outage too, reported and reconnected
        from, although no send, flush or commit failed to say so. kafka-python keeps looking
        for a coordinator on its own, silently, for ever."""
        coordinator = getattr(consumer, "_coordinator", None)
        if not hasattr(coordinator, "coordinator_id"):  # another kafka-python: no watch
            return
        if coordinator.coordinator_id is not None:
            self._coordinator_lost_at = None
            return
        now = time.monotonic()
        if self._coordinator_lost_at is None:
            self._coordinator_lost_at = now
        elif now - self._coordinator_lost_at > self.coordinator_lost_after_s:
            raise KafkaUnavailable(
                f"group {self.group_id!r} has had no reachable coordinator at "
                f"{self.bootstrap!r} for {now - self._coordinator_lost_at:.0f} s (over "
                "session_timeout_ms): the broker is down or unreachable"
            )

    def _skip_unreadable(self, consumer: KafkaConsumer, exc: Exception) -> bool:
        """A record kafka-python cannot decode (e.g. a header name that is not UTF-8, which
        other clients write and the broker accepts): read it again once, then dead-letter it
        by position (its bytes cannot be had) and seek past it, instead of reconnecting to the
        same record forever. It counts once an offset past it is committed: at once when
        nothing before it waits for a commit, else with the batch that commits up to it (one
        dropped and read again meanwhile skips it without a second dead letter). False when
        the partition is unknown (then: reconnect)."""
        fetched = getattr(getattr(consumer, "_fetcher", None), "_next_partition_records", None)
        tp = getattr(fetched, "topic_partition", None)
        producer = self._producer
        if tp is None or tp not in consumer.assignment() or producer is None:
            return False
        offset = consumer.position(tp)  # every record before it was returned
        if offset is None:
            return False
        # kafka-python keeps the failed fetch and, after a seek, spins on it inside poll().
        fetched.drain()
        if offset in self._skipped.get(tp, ()):  # dead-lettered already, then dropped
            consumer.seek(tp, offset + 1)
            return True
        if self._unreadable != (tp, offset):  # maybe a bad fetch: read it once more
            self._unreadable = (tp, offset)
            consumer.seek(tp, offset)
            return True
        self._unreadable = None
        reason = (
            f"the consumer could not decode the record at this offset ({exc}); skipped. Read "
            "it with another Kafka client; a record after it in the same producer batch may "
            "be skipped the same way"
        )
        message = Message(tp.topic, tp.partition, offset, None, b"", -1)
        value = encode_dead_letter(
            message, reason, "CorruptRecordError", max_bytes=self.max_dead_letter_bytes
        )
        logger.warning("dead-lettering the unreadable record %s@%d: %s", tp, offset, exc)
        try:
            producer.send_bytes(self.dead_letter_topic, value)
            producer.flush()
        except (kafka_errors.KafkaError, ServiceError) as error:
            raise self._kafka_failed("producing", error) from error
        self._skipped.setdefault(tp, []).append(offset)
        consumer.seek(tp, offset + 1)
        if self._first_uncommitted.setdefault(tp, offset) == offset:  # nothing before it waits
            self._commit([], lambda: None)
        return True

    def _close(self) -> None:
        consumer, producer = self._consumer, self._producer
        try:
            if consumer is not None:
                consumer.close(autocommit=False)
        except kafka_errors.KafkaError as exc:  # e.g. the processor's revocation hook failed
            if not self._failed:
                raise ServiceError(f"closing the consumer failed: {exc!r}") from exc
            logger.warning("closing the consumer after a failure also failed: %r", exc)
        finally:
            self._consumer = self._producer = None
            if producer is not None:
                producer.close()
            if self._worker is not None:
                self._worker.shutdown(wait=True, cancel_futures=True)
                self._worker = None
            self._in_flight.clear()
            self._batcher.take()
            self._next_offsets.clear()
            self._first_uncommitted.clear()
            self._skipped.clear()  # not committed: read again, dead-lettered again
            self._end_offsets.clear()
            self._last_records_at.clear()
            self._lookup = None  # its request fails with the consumer closed, and ends
        logger.info("consumer of group %r closed (%s)", self.group_id, self.stats)

    def _should_stop(self, deadline: float | None, stop_when: Callable[[], bool] | None) -> bool:
        if self._stop.is_set():
            return True
        if deadline is not None and time.monotonic() >= deadline:
            return True
        return stop_when is not None and bool(stop_when())

    # -- one batch ---------------------------------------------------------------------------

    def _start(self, batch: list[Message]) -> None:
        """Process `batch`; pipelined: once `prepare_workers` batches are in flight, apply the
        oldest, then prepare this one while the oldest's outputs are produced and flushed and
        its offsets committed."""
        started = time.monotonic()
        if not self._pipelined or self._worker is None:
            self._complete(batch, self._produce(batch, self._process(batch)), started)
            return
        applied = None
        if len(self._in_flight) >= self.prepare_workers:
            oldest = self._in_flight.popleft()
            applied = oldest, self._apply(oldest)
        prepare = self.processor.prepare  # type: ignore[attr-defined]
        self._in_flight.append(_InFlight(batch, self._worker.submit(prepare, batch), started))
        if applied is not None:
            oldest, outcome = applied
            self._complete(oldest.batch, self._produce(oldest.batch, outcome), oldest.started)

    def _finish_oldest(self) -> None:
        oldest = self._in_flight.popleft()
        outcome = self._apply(oldest)
        self._complete(oldest.batch, self._produce(oldest.batch, outcome), oldest.started)

    def _apply(self, in_flight: _InFlight) -> BatchOutcome:
        """Apply a prepared batch (its outputs are not produced yet)."""
        batch = in_flight.batch
        try:
            with self._processing():
                prepared = in_flight.prepared.result()
        except Exception as exc:
            # process() prepares again, with the retries and isolation of any failure.
            logger.warning("preparing a batch of %d failed (%r)", len(batch), exc)
            return self._process(batch)
        apply = self.processor.apply  # type: ignore[attr-defined]
        return self._process(batch, lambda: apply(batch, prepared))

    def _process(
        self, batch: list[Message], first_attempt: Callable[[], BatchResult] | None = None
    ) -> BatchOutcome:
        with self._processing():
            return process_batch(
                self.processor, batch, self.retry_policy, first_attempt=first_attempt
            )

    @contextmanager
    def _processing(self) -> Iterator[None]:
        """Add the block's time to this poll cycle's processing, less what the processor's own
        Kafka calls waited for the broker (see `_out_of_time`)."""
        started, waited = time.monotonic(), kafka_waited_s()
        try:
            yield
        finally:
            broker_s = kafka_waited_s() - waited
            self._processing_s += max(0.0, time.monotonic() - started - broker_s)

    def _produce(self, batch: list[Message], outcome: BatchOutcome) -> BatchOutcome:
        """Queue a batch's outputs and dead letters with the producer; returns what was queued
        (an output too large to produce has its input dead-lettered instead)."""
        producer = self._producer
        if producer is None:
            raise ServiceError("the runner is not running; call run()")
        if any(self._record_bytes(out) > self.max_request_bytes for out in outcome.outputs):
            outcome = self._without_oversized(batch, outcome)
        try:
            for out in outcome.outputs:
                producer.send_bytes(
                    out.topic,
                    out.value,
                    key=out.key,
                    timestamp_ms=out.timestamp_ms,
                    headers=out.headers,
                )
            for failure in outcome.failures:
                value = encode_dead_letter(
                    failure.message,
                    failure.reason,
                    failure.error_type,
                    max_bytes=self.max_dead_letter_bytes,
                )
                producer.send_bytes(
                    self.dead_letter_topic,
                    value,
                    key=failure.message.key,
                    headers=failure.message.headers,
                )
        except (kafka_errors.KafkaError, ServiceError) as exc:  # ServiceError: no connection
            raise self._kafka_failed("producing", exc) from exc
        return outcome

    @staticmethod
    def _record_bytes(out: EncodedOutput) -> int:
        """The size kafka-python gives the output's record, against max_request_size."""
        key = out.key.encode("utf-8") if out.key is not None else None
        return DefaultRecordBatchBuilder.estimate_size_in_bytes(key, out.value, list(out.headers))

    def _without_oversized(self, batch: list[Message], outcome: BatchOutcome) -> BatchOutcome:
        """`outcome` with each input whose output is too large to produce dead-lettered
        (OutputTooLarge) in place of its outputs. A batch of several is processed again
        message by message to tell which input it is (processors are idempotent: at least
        once)."""
        if len(batch) > 1:
            logger.warning(
                "a batch of %d has an output too large to produce; processing its messages one "
                "by one to find the input it came from",
                len(batch),
            )
            isolated = BatchOutcome(retries=outcome.retries)
            for message in batch:
                single = self._process([message])
                if any(self._record_bytes(o) > self.max_request_bytes for o in single.outputs):
                    single = self._without_oversized([message], single)
                isolated.outputs.extend(single.outputs)
                isolated.failures.extend(single.failures)
            return isolated
        (message,) = batch
        out = max(outcome.outputs, key=self._record_bytes)
        size = self._record_bytes(out)
        reason = (
            f"its output to {out.topic!r} would be a record of {size} bytes, over the "
            f"producer's max_request_size of {self.max_request_bytes}; the processor should "
            "refuse such input"
        )
        logger.warning(
            "dead-lettering %s[%d]@%d: %s",
            message.topic,
            message.partition,
            message.offset,
            reason,
            extra={
                "fields": {
                    "event": "output_too_large",
                    "topic": message.topic,
                    "partition": message.partition,
                    "offset": message.offset,
                    "output_topic": out.topic,
                    "output_bytes": size,
                }
            },
        )
        return BatchOutcome(
            failures=[Failure(message, reason, "OutputTooLarge")], retries=outcome.retries
        )

    def _kafka_failed(self, doing: str, exc: BaseException) -> ServiceError:
        """The error for a send, flush or commit that failed `doing` what: KafkaUnavailable
        (raising it reconnects, which drops the uncommitted work), or ProcessingOverran when
        the poll cycle's time budget cut it short after processing used the budget up. One
        the budget cut short is logged and counted as such."""
        if budget_spent():
            overran = self._out_of_time(doing, exc)
            if overran is not None:
                return overran
        return KafkaUnavailable(f"{doing} to {self.bootstrap!r} failed: {exc!r}")

    def _out_of_time(self, doing: str, exc: BaseException) -> ProcessingOverran | None:
        """The poll cycle ran past its time budget `doing` what: count and log it. When
        processing used PROCESSING_OVERRAN_SHARE of the budget or more, halve the batch limit
        and return the ProcessingOverran to raise (the caller drops the uncommitted work, so no
        batch bigger than the new limit stays buffered or in flight); otherwise the broker was
        slow to answer, which a smaller batch does not help: None, the limit stays."""
        self.metrics.poll_cycles_out_of_time.inc()
        processing_s = self._processing_s
        overran = processing_s >= self.cycle_budget_s * PROCESSING_OVERRAN_SHARE
        fields = {
            "event": "poll_cycle_out_of_time",
            "doing": doing,
            "slow": "processing" if overran else "broker",
            "processing_s": round(processing_s, 2),
            "budget_s": self.cycle_budget_s,
            "group": self.group_id,
            "bootstrap": self.bootstrap,
        }
        if not overran:
            self.metrics.poll_cycles_broker_slow.inc()
            logger.warning(
                "%s ran out of the poll cycle's %.1f s for Kafka (half of max_poll_interval_ms) "
                "(%r) waiting for the broker (processing took %.1f s): the broker is slow or "
                "away; the uncommitted messages will be read again, in batches of %d at most "
                "as before",
                doing,
                self.cycle_budget_s,
                exc,
                processing_s,
                self._batch_limit.value,
                extra={"fields": {**fields, "batch_limit": self._batch_limit.value}},
            )
            return None
        halved = self._batch_limit.value > 1
        self._batch_limit.halve()
        self._set_batch_limit()
        logger.warning(
            "%s ran out of the poll cycle's %.1f s for Kafka (half of max_poll_interval_ms) "
            "(%r) after processing took %.1f s; the uncommitted messages will be read again, "
            "in batches of %d at most (max_batch %d)",
            doing,
            self.cycle_budget_s,
            exc,
            processing_s,
            self._batch_limit.value,
            self.max_batch,
            extra={"fields": {**fields, "batch_limit": self._batch_limit.value}},
        )
        if halved:
            return ProcessingOverran(
                f"processing took {processing_s:.1f} s of the poll cycle's "
                f"{self.cycle_budget_s:.1f} s budget; batch limit halved",
                halved=True,
            )
        return ProcessingOverran(
            f"processing one message took {processing_s:.1f} s, over the poll cycle's "
            f"{self.cycle_budget_s:.1f} s budget (half of max_poll_interval_ms): a dependency "
            "of the processor (such as Redis) answers slowly, or the work needs more time; "
            "raise max_poll_interval_ms if it does",
            halved=False,
        )

    def _set_batch_limit(self) -> None:
        self._batcher.max_batch = self._batch_limit.value
        self.metrics.batch_limit.set(self._batch_limit.value)

    def _batch_fitted(self, size: int) -> None:
        """A batch of `size` was committed: double the batch limit once batches fit well."""
        if not self._batch_limit.committed(size, Deadline.after(None).left_s()):
            return
        self._set_batch_limit()
        logger.info(
            "batches fit in the poll cycle's %.1f s with time to spare; taking %d at most "
            "(max_batch %d)",
            self.cycle_budget_s,
            self._batch_limit.value,
            self.max_batch,
            extra={
                "fields": {
                    "event": "batch_limit_raised",
                    "batch_limit": self._batch_limit.value,
                    "group": self.group_id,
                }
            },
        )

    def _complete(self, batch: list[Message], outcome: BatchOutcome, started: float) -> None:
        """Wait for the broker to acknowledge the batch's outputs, then commit its offsets."""
        producer = self._producer
        if producer is None:
            raise ServiceError("the runner is not running; call run()")
        try:
            producer.flush()
        except ServiceError as exc:
            raise self._kafka_failed("flushing a batch's outputs", exc) from exc
        account = partial(self._account, batch, outcome, time.monotonic() - started)
        if self._commit(batch, account):
            self._batch_fitted(len(batch))
        self._dependency_back()
        self._maybe_update_lag(force=True, ask_broker=False)

    def _commit(self, batch: list[Message], account: Callable[[], None]) -> bool:
        """Commit the batch's offsets, past the skipped unreadable records they reach, and
        count them (`account`: the batch); False when a rebalance took its partitions first.
        A commit the budget cut short counts once it turns out to have landed."""
        offsets: dict[TopicPartition, int] = {}
        for message in batch:
            tp = TopicPartition(message.topic, message.partition)
            offsets[tp] = max(offsets.get(tp, 0), message.offset + 1)
        skipped = self._past_skipped(offsets)

        def committed() -> None:
            account()
            self._account_skipped(skipped)

        consumer = self._consumer
        if consumer is None:
            raise ServiceError("the runner is not running; call run()")
        self._settle_cut_short(consumer)
        deadline = Deadline.after(None)  # the poll cycle's budget (request_timeout_ms is 30 s)
        try:
            consumer.commit(
                {tp: OffsetAndMetadata(off, "", -1) for tp, off in offsets.items()},
                timeout_ms=deadline.left_ms() if deadline.bounded else None,
            )
        except _COMMIT_LOST as exc:
            # The group rebalanced: the new owner re-reads these messages (duplicates, no loss).
            self.stats.commits_failed += 1
            self.metrics.commits.labels(outcome="failed").inc()
            logger.warning(
                "offset commit failed after a rebalance (%r); the batch's messages will be "
                "processed again by the partitions' new owner",
                exc,
            )
            if budget_spent():  # the cycle overran, past max_poll_interval_ms: dropped from it
                overran = self._out_of_time("committing a batch's offsets", exc)
                if overran is not None:
                    raise overran from exc
                self._drop_uncommitted(consumer)
            return False
        except kafka_errors.KafkaError as exc:  # KafkaTimeoutError: the budget ran out
            self.metrics.commits.labels(outcome="error").inc()
            if isinstance(exc, kafka_errors.KafkaTimeoutError):  # it may land all the same
                self._cut_short = _CommitCutShort(offsets, committed)
            raise self._kafka_failed("committing a batch's offsets", exc) from exc
        self.metrics.commits.labels(outcome="ok").inc()
        self._set_degraded(False)
        self._next_offsets.update(offsets)
        self._first_uncommitted.update(offsets)
        committed()
        return True

    def _past_skipped(self, offsets: dict[TopicPartition, int]) -> list[tuple[TopicPartition, int]]:
        """Move `offsets` past each skipped unreadable record that they (or, for a partition
        not in them, its first uncommitted offset) reach: nothing before it is uncommitted
        then. Returns those records."""
        reached: list[tuple[TopicPartition, int]] = []
        for tp, pending in self._skipped.items():
            done = offsets.get(tp, self._first_uncommitted.get(tp))
            if done is None:
                continue
            past = done
            for offset in sorted(pending):
                if past < offset:
                    break
                past = max(past, offset + 1)
                reached.append((tp, offset))
            if past != done:
                offsets[tp] = past
        return reached

    def _account_skipped(self, skipped: list[tuple[TopicPartition, int]]) -> None:
        """Count skipped unreadable records whose offsets were committed past."""
        for tp, offset in skipped:
            pending = self._skipped.get(tp, [])
            if offset not in pending:  # its partition was revoked meanwhile: not ours to count
                continue
            pending.remove(offset)
            if not pending:
                del self._skipped[tp]
            self.stats.dead_lettered += 1
            self.metrics.messages_failed.labels(
                topic=tp.topic, error_type="CorruptRecordError"
            ).inc()

    def _settle_cut_short(self, consumer: KafkaConsumer) -> None:
        """Before the next poll or commit (either could read or commit its messages again),
        ask the group's committed offsets whether a commit the budget cut short landed. If it
        did, count its batch, and where its messages were dropped to be read again (no
        reconnect), read on after them instead. Otherwise, or when the answer does not come,
        its messages are read again and count with their new batch. Waits until the consumer
        has partitions (after a reconnect); only those still assigned tell: another owner may
        have committed the others since."""
        cut_short = self._cut_short
        if cut_short is None:
            return
        assigned = consumer.assignment()
        if not assigned:
            return
        self._cut_short = None
        offsets = {tp: off for tp, off in cut_short.offsets.items() if tp in assigned}
        deadline = Deadline.after(None)
        try:
            committed = {
                tp: consumer.committed(tp, timeout_ms=deadline.left_ms() or 1) for tp in offsets
            }
        except kafka_errors.KafkaError as exc:
            logger.warning(
                "could not learn whether a commit cut short by the poll cycle's budget landed "
                "(%r); its batch is counted if its messages are read again, else not at all",
                exc,
            )
            return
        if not offsets or any((committed[tp] or 0) < off for tp, off in offsets.items()):
            return
        cut_short.account()
        for tp, off in offsets.items():
            if self._first_uncommitted.get(tp, off) < off:  # dropped, nothing buffered since
                self._first_uncommitted[tp] = self._next_offsets[tp] = off
                consumer.seek(tp, off)

    def _account(self, batch: list[Message], outcome: BatchOutcome, seconds: float) -> None:
        """Count a committed batch in the stats and metrics."""
        failures: list[Failure] = outcome.failures
        failed_ids = {(f.message.topic, f.message.partition, f.message.offset) for f in failures}
        for message in batch:
            if (message.topic, message.partition, message.offset) not in failed_ids:
                self.metrics.messages_processed.labels(topic=message.topic).inc()
        for failure in failures:
            self.metrics.messages_failed.labels(
                topic=failure.message.topic, error_type=failure.error_type
            ).inc()
        for out in outcome.outputs:
            self.metrics.outputs_produced.labels(topic=out.topic).inc()
        if outcome.retries:
            self.metrics.batch_retries.inc(outcome.retries)
        self.metrics.observe_batch(len(batch), seconds)
        self.stats.batches += 1
        self.stats.processed += len(batch) - len(failed_ids)
        self.stats.dead_lettered += len(failures)
        self.stats.outputs += len(outcome.outputs)
        if failures:
            logger.info(
                "batch of %d: %d dead-lettered to %r",
                len(batch),
                len(failures),
                self.dead_letter_topic,
            )

    def _maybe_idle(self) -> None:
        """Nothing buffered or in flight: give the processor its time-driven turn."""
        hook = getattr(self.processor, "on_idle", None)
        now = time.monotonic()
        if hook is None or now - self._last_idle_call < IDLE_TICK_S:
            return
        self._last_idle_call = now
        _call_hook(hook, f"on_idle failed; trying again in {IDLE_TICK_S:.0f} s")
        self._dependency_back(batch_done=False)

    def _follow_group_partitions(self, consumer: KafkaConsumer) -> None:
        """After a rebalance, give the processor's `on_group_partitions` every partition of the
        subscribed topics as the broker lists them (one metadata request, not the cache),
        without waiting for the answer: it is read on a helper thread, and each turn of the
        loop looks whether it came (see the module docstring)."""
        hook = getattr(self.processor, "on_group_partitions", None)
        lookup = self._lookup
        if hook is None or (lookup is None and not self._rebalanced):
            return
        if lookup is None:
            self._rebalanced = False
            self._lookup = _PartitionsLookup(self._read_partitions(consumer), time.monotonic())
            return
        if not lookup.answer.done():
            waited = time.monotonic() - lookup.started
            if not lookup.overdue and waited >= GROUP_PARTITIONS_WARN_S:
                lookup.overdue = True
                logger.warning(
                    "the broker has not listed the partitions of %s %.0f s after a rebalance; "
                    "consuming goes on, and the processor hears of them when the answer comes",
                    self.topics,
                    waited,
                    extra={
                        "fields": {
                            "event": "group_partitions_overdue",
                            "topics": self.topics,
                            "waited_s": round(waited, 1),
                            "bootstrap": self.bootstrap,
                        }
                    },
                )
            return
        self._lookup = None  # a rebalance meanwhile left _rebalanced set: read them again
        try:
            partitions = lookup.answer.result()
        except kafka_errors.KafkaError as exc:
            raise KafkaUnavailable(
                f"reading the partitions of {self.topics} from {self.bootstrap!r} failed: {exc!r}"
            ) from exc
        try:
            _call_hook(
                hook,
                "on_group_partitions failed; called again after the next rebalance",
                partitions,
            )
        except ServiceError:
            self._rebalanced = True  # a dependency outage: called again once it is over
            raise

    def _read_partitions(self, consumer: KafkaConsumer) -> Future:
        """Start reading every partition of the subscribed topics from the broker, on a daemon
        thread (closing the consumer ends a request that is still waiting)."""
        answer: Future = Future()

        def read() -> None:
            try:
                listed = consumer.topics()
                answer.set_result(
                    {
                        topic: frozenset(
                            consumer.partitions_for_topic(topic) if topic in listed else ()
                        )
                        for topic in self.topics
                    }
                )
            except BaseException as exc:
                answer.set_exception(exc)

        threading.Thread(target=read, name="threefold-group-partitions", daemon=True).start()
        return answer

    def _records_resume(self, records: Mapping[TopicPartition, list[Any]]) -> bool:
        """Whether the poll returned records of a partition that had none for LAG_INTERVAL_S
        (or never): the end offsets known may predate them (and records on other partitions
        written with them), so they are asked for again before the records are processed."""
        now = time.monotonic()
        resumed = False
        for tp, tp_records in records.items():
            if tp_records:
                last = self._last_records_at.get(tp)
                resumed = resumed or last is None or now - last >= LAG_INTERVAL_S
                self._last_records_at[tp] = now
        return resumed

    def _maybe_update_lag(self, *, force: bool = False, ask_broker: bool = True) -> None:
        """Every LAG_INTERVAL_S (at once when `force`): ask for the assigned partitions' end
        offsets (unless `ask_broker` is False: then the ones known serve, with the high
        watermarks fetches told of), then set each one's lag gauge and hand the processor's
        `on_backlog` hook the records each has unread (see the module docstring)."""
        now = time.monotonic()
        consumer = self._consumer
        if consumer is None or (not force and now - self._last_lag_update < LAG_INTERVAL_S):
            return
        deadline = Deadline.after(END_OFFSETS_TIMEOUT_S)
        if ask_broker:
            self._last_lag_update = now
            self.metrics.refresh_throughput()
            self._refresh_end_offsets(consumer, deadline)
        with self._lock:
            held = [m for batch in self._in_flight for m in batch.batch] + self._batcher.pending
            pending = {TopicPartition(m.topic, m.partition) for m in held}
            unread = {
                tp: self._unread(consumer, tp, deadline, pending=tp in pending)
                for tp in consumer.assignment()
            }
        for tp, count in unread.items():
            if count is not None:
                self.metrics.set_lag(tp.topic, tp.partition, count)
        hook = getattr(self.processor, "on_backlog", None)
        if hook is not None:
            _call_hook(hook, f"on_backlog failed; told again in {LAG_INTERVAL_S:.0f} s", unread)

    def _refresh_end_offsets(self, consumer: KafkaConsumer, deadline: Deadline) -> None:
        """Ask the broker for the assigned partitions' end offsets, paused ones and ones not
        fetched yet included, waiting until `deadline` at most. On a failure the last known
        ones stay (counted in `stats.end_offsets_failed`, logged once until one succeeds)."""
        assigned = sorted(consumer.assignment())
        if not assigned:
            return
        try:
            ends = consumer.end_offsets(assigned, timeout_ms=max(1, deadline.left_ms()))
        except kafka_errors.KafkaError as exc:
            self.stats.end_offsets_failed += 1
            if not self._end_offsets_failing:
                logger.warning(
                    "could not learn the end offsets of %d partition(s) (%r); consumer lag and "
                    "partition backlogs use the last known ones until the broker answers",
                    len(assigned),
                    exc,
                    extra={"fields": {"event": "end_offsets_failed", "error": repr(exc)}},
                )
            self._end_offsets_failing = True
            return
        if self._end_offsets_failing:
            logger.info("the broker answers requests for end offsets again")
        self._end_offsets_failing = False
        with self._lock:
            assigned_now = consumer.assignment()  # a rebalance may have run meanwhile
            self._end_offsets.update({tp: end for tp, end in ends.items() if tp in assigned_now})

    def _unread(
        self, consumer: KafkaConsumer, tp: TopicPartition, deadline: Deadline, *, pending: bool
    ) -> int | None:
        """Records of `tp` not processed yet: from its first uncommitted offset when it has
        records buffered or in flight (`pending`), else from its position (past any control
        record, which a committed offset may never pass), to its end offset as last known, or
        its high watermark when a fetch told of a later one. None when either is not known."""
        known = (self._end_offsets.get(tp), consumer.highwater(tp))
        ends = [end for end in known if end is not None]
        done = self._first_uncommitted.get(tp) if pending else None
        if done is None:
            try:
                done = consumer.position(tp, timeout_ms=deadline.left_ms())
            except kafka_errors.KafkaError:
                return None
        if done is None or not ends:
            return None
        return max(0, max(ends) - done)

    # -- rebalance (kafka-python calls these on its IO thread while run() is in poll/close) --

    def _on_revoked(self, partitions: Collection[TopicPartition], *, lost: bool) -> None:
        with self._lock:
            revoked = set(partitions)
            # A prepared batch has no effects yet: drop it whole, with the buffered messages
            # that follow it on its partitions, and read them all again.
            prepared = [m for in_flight in self._in_flight for m in in_flight.batch]
            self._in_flight.clear()
            rewind = set(revoked) | {TopicPartition(m.topic, m.partition) for m in prepared}
            dropped = prepared + self._batcher.drop(
                lambda m: TopicPartition(m.topic, m.partition) not in rewind
            )
            if dropped and self._consumer is not None:
                # Not processed, not committed: rewind so that if this consumer keeps the
                # partition it reads them again; a new owner starts at the committed offset.
                first: dict[TopicPartition, int] = {}
                for m in dropped:
                    tp = TopicPartition(m.topic, m.partition)
                    first[tp] = min(first.get(tp, m.offset), m.offset)
                for tp, offset in first.items():
                    if not (lost and tp in revoked):
                        self._consumer.seek(tp, offset)
            for tp in revoked:
                self._next_offsets.pop(tp, None)
                self._first_uncommitted.pop(tp, None)
                self._skipped.pop(tp, None)
                self._end_offsets.pop(tp, None)
                self._last_records_at.pop(tp, None)
                self.metrics.forget_partition(tp.topic, tp.partition)
            event = "lost" if lost else "revoked"
            self.metrics.rebalances.labels(event=event).inc()
            logger.info(
                "partitions %s %s (%d buffered message(s) left for re-reading)",
                sorted(revoked),
                event,
                len(dropped),
            )
            hook = getattr(self.processor, "on_partitions_revoked", None)
            if hook is not None and not self._failed:
                hook(revoked)

    def _on_assigned(self, partitions: Collection[TopicPartition]) -> None:
        with self._lock:
            self.metrics.rebalances.labels(event="assigned").inc()
            logger.info("partitions %s assigned", sorted(partitions))
            self._rebalanced = True
            outage = self._outage
            if outage is not None and outage.waiting and self._consumer is not None:
                self._consumer.pause(*partitions)  # until the dependency outage's retry
            hook = getattr(self.processor, "on_partitions_assigned", None)
            if hook is not None:
                hook(set(partitions))


def _call_hook(hook: Callable[..., None], failed: str, *args: Any) -> None:
    """Call a processor's time- or metadata-driven hook on the consumer thread: a ServiceError
    (a dependency is down) goes to the caller (a dependency outage: retried with backoff);
    other errors are logged (`failed` says what next)."""
    try:
        hook(*args)
    except ServiceError:
        raise
    except Exception:
        logger.exception("the processor's %s", failed)


class _Listener(ConsumerRebalanceListener):
    def __init__(self, runner: ConsumerRunner) -> None:
        self._runner = runner

    def on_partitions_revoked(self, revoked: Collection[TopicPartition]) -> None:
        self._runner._on_revoked(revoked, lost=False)

    def on_partitions_assigned(self, assigned: Collection[TopicPartition]) -> None:
        self._runner._on_assigned(assigned)

    def on_partitions_lost(self, lost: Collection[TopicPartition]) -> None:
        self._runner._on_revoked(lost, lost=True)


def _to_message(record: Any) -> Message:
    return Message(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        value=record.value if record.value is not None else b"",
        timestamp_ms=record.timestamp,
        headers=tuple((name, value or b"") for name, value in record.headers or ()),
    )
