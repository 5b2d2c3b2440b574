"""The alerts BatchProcessor (parse -> score -> aggregate -> decide -> emit) and its publisher.

Outputs: every valid input goes to the scored topic (late ones too, flagged `late`); invalid
inputs go back to the runner as failures, which dead-letters them with the reason. Alerts are
claimed in the state store's outbox, then published to the alerts topic by `AlertPublisher`
(produced and flushed inside `process`, before the runner commits the batch's offsets); the
acknowledgement that records a published alert also queues its webhook delivery.

Redis failing (down, timing out) is a ServiceError: the runner retries with backoff for as long
as it lasts, committing nothing. Redis refusing the consumer (wrong credentials, an ACL without
the commands the state needs) is a `DependencyRefused`: the runner stops, as waiting cannot
fix it. The processor's `on_status` writes the runner's status to Redis as this consumer's
heartbeat (`StateStore.write_heartbeat`), with its publisher's delivery state and its assigned
partition count, for the dashboard's /healthz.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import redis
from redis.exceptions import AuthenticationError, AuthorizationError, NoPermissionError

from threefold.apps.alerts.config import AlertsConfig
from threefold.apps.alerts.messages import InvalidMessage, NewsItem, parse_message
from threefold.apps.alerts.metrics import AlertsMetrics
from threefold.apps.alerts.pipeline import AlertPipeline, PipelineResult
from threefold.apps.alerts.scoring import BatchScorer, ScoredItem
from threefold.apps.alerts.signals import scored_summary
from threefold.apps.alerts.state.signal_store import SignalStore
from threefold.apps.alerts.state.store import StateStore
from threefold.core.errors import ServiceError
from threefold.core.webhook import OutboxSender
from threefold.streaming.kafka_calls import Deadline, time_budget
from threefold.streaming.messages import BatchResult, Message, Output
from threefold.streaming.runner import HEARTBEAT_S, DependencyRefused, RunnerStatus
from threefold.streaming.topic_probe import TopicProbe

logger = logging.getLogger(__name__)
# A publishing call's time for Kafka in all (probe, sends, flush) unless told otherwise, and
# close()'s at shutdown; well inside the outbox lease (state.store.ALERT_LEASE_S).
PUBLISH_TIMEOUT_S = 10.0
# why a partition left the watermark: its topic is not an input any more / the topic lacks it
TOPIC_NOT_READ, PARTITION_GONE = "topic_not_read", "partition_gone"
# Redis answered and refused the consumer: waiting does not fix these (the runner stops)
REDIS_REFUSALS = (AuthenticationError, AuthorizationError, NoPermissionError)
ERROR_CHARS = 300  # a publish error in the heartbeat is cut to this


@dataclass(frozen=True)
class DeliveryState:
    """Whether a publisher's alerts reach Kafka, as its last call left them (for the heartbeat).

    `failing_since`: Unix time of the first call in a row that left an alert undelivered (its
    send failed, or has no answer yet); None when the last call left none. `undelivered`: how
    many such alerts (back in the outbox, or in flight). `error`: the last error, if any."""

    failing_since: float | None = None
    undelivered: int = 0
    error: str = ""

    def after_call(
        self, undelivered: int, error: BaseException | None, now: float
    ) -> DeliveryState:
        """The state after a call that left `undelivered` alerts, its error `error`, at `now`."""
        if not undelivered:
            return DeliveryState()
        since = now if self.failing_since is None else self.failing_since
        told = repr(error)[:ERROR_CHARS] if error is not None else self.error
        return DeliveryState(since, undelivered, told)

    def to_heartbeat(self) -> dict[str, Any]:
        return {
            "publish_failing_since": self.failing_since,
            "alerts_undelivered": self.undelivered,
            "publish_error": self.error,
        }


class AlertPublisher:
    """Publishes the store's pending alerts (outbox) to the alerts topic, then acknowledges them.

    Each alert is sent once per lease: a send the broker has not answered yet (say a flush
    timed out on a slow broker) stays in flight under this publisher's lease, which every call
    renews, and is acknowledged when it succeeds or released for a resend when it fails. Sending
    it again while the first send may still land would publish it twice.

    Each call waits for Kafka `budget_s` at most in all (the probe, the sends, the flush), and
    never past the end of the caller's `kafka_calls.time_budget` (the runner's poll cycle): the
    consumer thread must poll again within max_poll_interval_ms. What has no answer by then
    stays in flight or in the outbox for the next call, and the call logs
    `"event": "alerts_publish_out_of_time"` and counts in
    threefold_alerts_publish_out_of_time_total. The alerts live in the outbox, not in the input
    offsets, so the batch's offsets are committed all the same and none is lost.

    With a `probe` on the alerts topic, the topic's end offsets are noted in the store before an
    alert's first send; an alert that has such a note (a publisher died, or a send failed, after
    the broker may have written it) is looked for in the topic from there and acknowledged
    without a resend when it is found.

    With a `webhook`, acknowledging an alert also queues its webhook delivery in the store's
    webhook outbox (one atomic step), which the `OutboxSender` (started on the first call, so
    it resumes what a previous process left) delivers at least once.
    """

    def __init__(
        self,
        store: StateStore,
        producer: Any,
        topic: str,
        *,
        probe: TopicProbe | None = None,
        webhook: OutboxSender | None = None,
        metrics: AlertsMetrics | None = None,
        budget_s: float = PUBLISH_TIMEOUT_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.producer = producer
        self.topic = topic
        self.probe = probe
        self.webhook = webhook
        self.metrics = metrics or AlertsMetrics()
        self.budget_s = budget_s
        self.owner = uuid.uuid4().hex  # holds the outbox leases of what it is sending
        self._sending: dict[str, tuple[dict, Any]] = {}  # alert id -> (alert, producer future)
        # alert id -> alert whose last send by this publisher failed (back in the outbox)
        self._failed: dict[str, dict] = {}
        self._clock = clock  # Unix seconds: the dashboard compares `delivery` with its own
        self._delivery = DeliveryState()

    @property
    def delivery(self) -> DeliveryState:
        """Whether the alerts reach Kafka, as the last `publish_pending` left them; safe to read
        from another thread (one immutable value, replaced at the end of each call)."""
        return self._delivery

    def publish_pending(self) -> list[dict]:
        """Send the pending alerts no other consumer is sending, flush, and settle every send
        that has an answer; returns the alerts published by this call. Failed ones stay
        pending, free for the next call of any publisher."""
        if self.webhook is not None:
            self.webhook.start()
        with time_budget(self.budget_s) as budget:
            pending = self.store.lease_pending_alerts(self.owner)  # renews the in-flight leases
            leased = {alert["alert_id"] for alert in pending}
            # failed before and not leased now: another consumer holds or published them
            self._failed = {i: alert for i, alert in self._failed.items() if i in leased}
            fresh = [alert for alert in pending if alert["alert_id"] not in self._sending]
            landed: list[dict] = []
            unsent: list[dict] = []
            error: BaseException | None = None
            if fresh and self.probe is not None:
                try:
                    landed, fresh = self._split_published(fresh, self.probe)
                except Exception as exc:  # the broker is down: try them all again later
                    unsent, fresh, error = fresh, [], exc
            for alert in fresh:
                try:
                    future = self.producer.send(self.topic, alert, key=alert["key"])
                except Exception as exc:  # e.g. no metadata in time: the broker is down
                    unsent.append(alert)
                    error = exc
                else:
                    self._sending[alert["alert_id"]] = (alert, future)
            if self._sending:
                try:
                    self.producer.flush(timeout=self.budget_s)
                except Exception as exc:  # settled below, send by send
                    error = exc
        sent, failed = self._settle()
        sent += landed
        failed += unsent
        if failed:
            self.store.release_alerts(failed, self.owner)
            self._failed.update((alert["alert_id"], alert) for alert in failed)
            self.metrics.publish_failures.inc()
            logger.warning("could not publish %d alert(s) (%r); will retry", len(failed), error)
        if (failed or self._sending) and budget.passed:
            self._report_out_of_time(budget, failed, error)
        elif self._sending:
            logger.warning(
                "%d alert(s) not acknowledged by Kafka yet; waiting for them, not resending",
                len(self._sending),
            )
        if sent:
            self._acknowledge(sent)
        undelivered = len(self._failed.keys() | self._sending.keys())
        self._delivery = self._delivery.after_call(undelivered, error, self._clock())
        return sent

    def _report_out_of_time(
        self, budget: Deadline, released: list[dict], error: BaseException | None
    ) -> None:
        """The call's time for Kafka ran out with alerts in flight or released."""
        in_flight = list(self._sending)
        self.metrics.publish_out_of_time.inc()
        logger.warning(
            "publishing alerts ran out of its %s for Kafka (the consumer must poll again within "
            "max_poll_interval_ms): %d alert(s) in flight wait for the broker's answer, %d go "
            "out on the next try; all stay in the outbox, none is lost (%r)",
            budget.limit_text,
            len(in_flight),
            len(released),
            error,
            extra={
                "fields": {
                    "event": "alerts_publish_out_of_time",
                    "budget_s": round(budget.limit_s, 3),
                    "in_flight": in_flight,
                    "released": [alert["alert_id"] for alert in released],
                    "error": repr(error),
                }
            },
        )

    def _split_published(
        self, alerts: list[dict], probe: TopicProbe
    ) -> tuple[list[dict], list[dict]]:
        """(alerts sent before that the topic already holds, the rest to send); notes the
        topic's end offsets for the alerts sent for the first time."""
        marks = self.store.sending_marks(alerts)
        found: set[str] = set()
        if marks:
            partitions = {p for offsets in marks.values() for p in offsets}
            # A partition missing from a note was created after it: read it from the start.
            since = {p: min(offsets.get(p, 0) for offsets in marks.values()) for p in partitions}
            found = probe.ids_since(since, set(marks), id_field="alert_id")
        first = [alert for alert in alerts if alert["alert_id"] not in marks]
        if first:
            self.store.mark_sending(first, probe.end_offsets())
        landed = [alert for alert in alerts if alert["alert_id"] in found]
        for alert in landed:
            logger.info(
                "alert %s is in %r already (sent before a crash or a failed send); "
                "acknowledging it without sending it again",
                alert["alert_id"],
                self.topic,
            )
        return landed, [alert for alert in alerts if alert["alert_id"] not in found]

    def close(self, timeout_s: float = PUBLISH_TIMEOUT_S) -> None:
        """On shutdown, within `timeout_s` in all (Redis calls aside): close the producer,
        which waits for the sends in flight and drops those without an answer by then;
        acknowledge the alerts that landed, free the rest for the other consumers (an
        unanswered one may then go out twice, never zero times; with a probe it is looked for
        in the topic first), close the probe and the webhook sender, and log how many alerts
        were not delivered: those, and the ones whose last send by this publisher failed that
        are still in the outbox."""
        with time_budget(timeout_s) as budget:
            if self.producer is not None:
                self.producer.close(timeout=timeout_s)
            sent, failed = self._settle()
            undelivered = failed + [alert for alert, _ in self._sending.values()]
            self._sending.clear()
            if undelivered:
                self.store.release_alerts(undelivered, self.owner)
            if sent:
                self._acknowledge(sent)
            undelivered += self._failed_still_pending(undelivered)
            if self.probe is not None:
                self.probe.close()
            if self.webhook is not None:
                self.webhook.close(timeout_s=budget.left_s())
        self._report_close(undelivered, timeout_s)

    def _failed_still_pending(self, besides: list[dict]) -> list[dict]:
        """The alerts whose last send by this publisher failed that are still in the outbox
        (another consumer may have published them since), other than `besides`; all of them
        when Redis does not say."""
        told = {alert["alert_id"] for alert in besides}
        failed = [alert for alert_id, alert in self._failed.items() if alert_id not in told]
        if not failed:
            return []
        try:
            pending = {alert["alert_id"] for alert in self.store.pending_alerts()}
        except Exception as exc:  # Redis away: report them all as possibly undelivered
            logger.warning("could not read the alerts outbox at close (%r)", exc)
            return failed
        return [alert for alert in failed if alert["alert_id"] in pending]

    def _report_close(self, undelivered: list[dict], timeout_s: float) -> None:
        """The log line of `close`: how many alerts it leaves undelivered, and where they are."""
        if not undelivered:
            logger.info("alert publisher closed: every alert it sent was acknowledged by Kafka")
            return
        again = (
            "after looking for them in the alerts topic, so none goes out twice"
            if self.probe is not None
            else "again (one the broker took after all then goes out twice)"
        )
        logger.warning(
            "alert publisher closed with %d alert(s) not acknowledged by Kafka (their last send "
            "failed, or had no answer within %g s): not lost, they are back in the Redis outbox, "
            "and the next consumer (another replica now, or this one after its restart) "
            "publishes them %s",
            len(undelivered),
            timeout_s,
            again,
            extra={
                "fields": {
                    "event": "alerts_undelivered_at_close",
                    "undelivered": len(undelivered),
                    "alert_ids": [alert["alert_id"] for alert in undelivered],
                    "timeout_s": timeout_s,
                    "kept_in": "outbox",
                }
            },
        )

    def _settle(self) -> tuple[list[dict], list[dict]]:
        """Take the answered sends out of flight: (succeeded, failed) alerts."""
        sent: list[dict] = []
        failed: list[dict] = []
        for alert_id, (alert, future) in list(self._sending.items()):
            if not future.is_done:
                continue
            del self._sending[alert_id]
            (failed if future.failed() else sent).append(alert)
        return sent, failed

    def _acknowledge(self, sent: list[dict]) -> None:
        dropped = self.store.ack_alerts(sent, webhook=self.webhook is not None)
        for alert in sent:
            self._failed.pop(alert["alert_id"], None)
        self.metrics.alerts.inc(len(sent))
        for alert in sent:
            logger.info("published alert %s: %s", alert["alert_id"], alert["summary"])
        if dropped:
            self.metrics.webhook_dropped.inc(len(dropped))
            logger.error(
                "the alert webhook outbox is full: dropped %d undelivered alert(s), oldest "
                "first: %s. Fix: bring the webhook receiver back (see "
                "threefold_alerts_webhook_failures_total) or raise "
                "THREEFOLD_ALERTS_WEBHOOK_OUTBOX_MAX",
                len(dropped),
                ", ".join(dropped),
                extra={"fields": {"event": "webhook_dropped", "alert_ids": dropped}},
            )
        if self.webhook is not None:
            self.webhook.wake()


@dataclass
class PreparedBatch:
    """A batch parsed and scored, not yet applied to the windows."""

    scored: list[ScoredItem] = field(default_factory=list)
    sources: list[Message] = field(default_factory=list)  # the message of each scored item
    failed: list[tuple[Message, str]] = field(default_factory=list)


class AlertsProcessor:
    """PreparingProcessor for ConsumerRunner: scoring overlaps the previous batch's commit."""

    def __init__(
        self,
        config: AlertsConfig,
        scorer: BatchScorer,
        pipeline: AlertPipeline,
        publisher: AlertPublisher,
        *,
        metrics: AlertsMetrics | None = None,
        signals: SignalStore | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.scorer = scorer
        self.pipeline = pipeline
        self.publisher = publisher
        self.metrics = metrics or publisher.metrics
        self.signals = signals  # remembers scored headlines for analysts to correct
        self._clock = clock
        self._last_seen: dict[str, float | None] = {}  # partition -> last message (None: idle)
        # partition -> (its watermark, wall clock of its last message): for on_idle
        self._event_clock: dict[str, tuple[float, float]] = {}
        self._last_message_at: float | None = None
        self._unregistered: set[str] = set()  # assigned, not yet registered in the watermark
        # partition -> records not processed yet, as the runner last counted them (None: not
        # known); None without any count (no runner: idleness is wall-clock time alone)
        self._unread: dict[str, int | None] | None = None
        # names this consumer's heartbeat: host and process, for people; unique all the same
        self.consumer_id = f"{socket.gethostname()}:{os.getpid()}:{publisher.owner[:8]}"

    def process(self, batch: list[Message]) -> BatchResult:
        return self.apply(batch, self.prepare(batch))

    def prepare(self, batch: list[Message]) -> PreparedBatch:
        """Parse and score (no state touched): runs on the runner's worker thread."""
        prepared = PreparedBatch()
        items: list[NewsItem] = []
        future = self.config.max_future_s
        not_after = time.time() + future if future > 0 else None
        for message in batch:
            try:
                item = parse_message(
                    message.value, fallback_time=message.timestamp_ms / 1000.0, not_after=not_after
                )
            except InvalidMessage as exc:
                prepared.failed.append((message, exc.reason))
                continue
            items.append(item)
            prepared.sources.append(message)
        started = time.perf_counter()
        prepared.scored = self.scorer.score(items)
        self.metrics.scoring_seconds.observe(time.perf_counter() - started)
        return prepared

    def apply(self, batch: list[Message], prepared: PreparedBatch) -> BatchResult:
        """Windows, surge decisions and alerts in Redis, then the scored outputs."""
        scored, sources = prepared.scored, prepared.sources
        self.metrics.invalid.inc(len(prepared.failed))
        with _state_errors():
            self._register_assigned()
            idle = self._idle_partitions([_partition_name(m.topic, m.partition) for m in batch])
            partitions = [_partition_name(m.topic, m.partition) for m in sources]
            result = self.pipeline.process(scored, partitions, idle_partitions=idle)
            self._reported_idle(idle)
            self.publisher.publish_pending()
            if self.signals is not None:
                self.signals.record_scored([scored_summary(s.to_dict()) for s in scored])
        now = self._clock()
        self._last_message_at = now
        for partition, watermark in result.partition_watermarks.items():
            before = self._event_clock.get(partition, (watermark, now))[0]
            self._event_clock[partition] = (max(before, watermark), now)
        self._account(len(scored), result)
        outputs = [
            Output(
                self.config.scored_topic,
                s.to_dict(),
                key=m.key_text() or s.item.id,
                headers=m.headers,
            )
            for s, m in zip(scored, sources, strict=True)
        ]
        return BatchResult(outputs=outputs, failed=list(prepared.failed))

    def on_idle(self) -> None:
        """Between messages: drop idle partitions from the watermark (a consumer whose
        partitions are all silent gets no batch to do it in), close the last windows of a
        quiet stream, then publish what is in the outbox (alerts just claimed, a dead
        consumer's whose lease ran out, failed sends)."""
        with _state_errors():
            self._register_assigned()
            idle = self._idle_partitions([])
            result = self._close_quiet_windows()
            if result is None and idle:
                result = self.pipeline.advance({}, idle)
                self._reported_idle(idle)
            self.publisher.publish_pending()
        if result is not None:
            self._account(0, result)

    def on_status(self, status: RunnerStatus) -> None:
        """Write the runner's status as this consumer's heartbeat (the runner calls it on a
        helper thread every few seconds; while Redis is away it fails, and the heartbeat ages),
        with what the publisher's last call left undelivered and the partitions assigned."""
        beat = {
            **status.to_dict(),
            **self.publisher.delivery.to_heartbeat(),
            "partitions_assigned": len(self._last_seen),
            "consumer": self.consumer_id,
            "written_at": time.time(),
            "interval_s": HEARTBEAT_S,
        }
        self.pipeline.store.write_heartbeat(self.consumer_id, beat)

    def _close_quiet_windows(self) -> PipelineResult | None:
        """After `quiet_close_s` without messages, event time runs on with the wall clock from
        each partition's last message, so the last windows close (with their final surge
        decisions) instead of waiting for the next message."""
        last = self._last_message_at
        if self.config.quiet_close_s <= 0 or last is None or not self._event_clock:
            return None
        now = self._clock()
        if now - last < self.config.quiet_close_s:
            return None
        # A partition with records still to read is not quiet: it keeps its watermark.
        watermarks = {
            p: mark + (now - at)
            for p, (mark, at) in self._event_clock.items()
            if self._caught_up(p)
        }
        # Assigned partitions without messages would otherwise hold the watermark back.
        silent = [p for p in self._last_seen if p not in self._event_clock and self._caught_up(p)]
        return self.pipeline.advance(watermarks, silent)

    def on_partitions_revoked(self, partitions: Collection[Any]) -> None:
        for tp in partitions:
            name = _partition_name(tp.topic, tp.partition)
            self._last_seen.pop(name, None)
            self._event_clock.pop(name, None)
            self._unregistered.discard(name)
        self._in_rebalance(self.publisher.publish_pending, "publishing the outbox")

    def on_partitions_assigned(self, partitions: Collection[Any]) -> None:
        names = [_partition_name(tp.topic, tp.partition) for tp in partitions]
        now = self._clock()
        self._last_seen.update(dict.fromkeys(names, now))
        self._unregistered.update(names)
        self._in_rebalance(self._register_assigned, "registering the assigned partitions")
        # Alerts claimed by a consumer that died before publishing them.
        self._in_rebalance(self.publisher.publish_pending, "publishing the outbox")

    def _in_rebalance(self, work: Callable[[], object], doing: str) -> None:
        """Redis work in a rebalance hook. kafka-python takes an error raised there for a broken
        group (the runner would reconnect, again and again while Redis is away), so a Redis
        failure is logged and left to the next batch or idle tick, which retries it."""
        try:
            with _state_errors():
                work()
        except ServiceError as exc:
            logger.warning("%s at a rebalance failed (%s); the next batch does it", doing, exc)

    def on_backlog(self, unread: Mapping[Any, int | None]) -> None:
        """The runner's count of each assigned partition's records not processed yet (None:
        not known), every second and before the first records after a quiet spell."""
        self._unread = {_partition_name(tp.topic, tp.partition): n for tp, n in unread.items()}

    def _caught_up(self, name: str) -> bool:
        """Whether partition `name` may count as having no records left to read: the runner
        counted none, or cannot tell (no count yet, the broker not answering for its end
        offset), when the time since its last message decides alone, as it did before counts:
        an unknown count must not hold the group's windows open for as long as it lasts."""
        return self._unread is None or not self._unread.get(name)

    def _register_assigned(self) -> None:
        """Register in the watermark the partitions assigned since the last registration, and
        the ones dropped as idle that have records to read again: they hold it back again
        (where it is) until their next message."""
        rejoining = [
            n for n, last in self._last_seen.items() if last is None and not self._caught_up(n)
        ]
        self._unregistered.update(rejoining)
        if self._unregistered:
            self.pipeline.register_partitions(sorted(self._unregistered))
            self._unregistered.clear()
        now = self._clock()
        for name in rejoining:
            self._last_seen[name] = now

    def on_group_partitions(self, partitions: Mapping[str, Collection[int]]) -> None:
        """After a rebalance (`partitions`: every partition of the input topics, the other
        replicas' too): drop from the watermark the partitions the group no longer reads, so
        an input topic changed, or recreated with fewer partitions, under the same Redis prefix
        does not hold it back for good; the windows then due close. A partition assigned to
        this consumer is never dropped: the broker that answered the metadata request may not
        know yet of partitions just added."""
        with _state_errors():
            known = self.pipeline.store.partition_watermarks()
            dropped = {
                name: reason
                for name, reason in unread_partitions(known, partitions).items()
                if name not in self._last_seen
            }
            if not dropped:
                return
            result = self.pipeline.advance({}, sorted(dropped))
            if result.alerts:
                self.publisher.publish_pending()
        for reason in dropped.values():
            self.metrics.partitions_dropped.labels(reason=reason).inc()
        logger.warning(
            "dropped input partition(s) %s from the event-time watermark: the consumer group "
            "reads %s now; watermark %s",
            ", ".join(f"{name} ({reason})" for name, reason in sorted(dropped.items())),
            {topic: sorted(numbers) for topic, numbers in sorted(partitions.items())},
            result.watermark,
            extra={
                "fields": {
                    "event": "watermark_partitions_dropped",
                    "partitions": dict(sorted(dropped.items())),
                    "their_watermarks": {name: known[name] for name in sorted(dropped)},
                    "input_partitions": {t: sorted(n) for t, n in sorted(partitions.items())},
                    "watermark": result.watermark,
                }
            },
        )
        self._account(0, result)

    def _idle_partitions(self, seen: list[str]) -> list[str]:
        """Assigned partitions without a message for `partition_idle_s` and no records left to
        read, not reported yet. One with unread records is never idle, however long ago its
        last message came (a burst fetched one partition at a time, partitions paused through
        an outage): dropped, it would let the others' messages move the watermark past its own."""
        now = self._clock()
        for name in seen:
            self._last_seen[name] = now
        return [
            name
            for name, last in self._last_seen.items()
            if last is not None
            and now - last > self.config.partition_idle_s
            and self._caught_up(name)
        ]

    def _reported_idle(self, names: list[str]) -> None:
        """The store dropped `names` from its watermark: not reported again until a message
        (marked only then, so an attempt that failed reports them again on its retry)."""
        for name in names:
            if name in self._last_seen:
                self._last_seen[name] = None

    def _account(self, n_scored: int, result: PipelineResult) -> None:
        m = self.metrics
        m.scored.inc(n_scored)
        m.late.inc(result.late)
        m.ahead_of_clock.inc(result.ahead_of_clock)
        m.duplicates.inc(result.duplicates)
        m.windows_closed.inc(result.windows_closed)
        for reason, count in result.suppressed.items():
            m.suppressed.labels(reason=reason).inc(count)
        if result.watermark is not None:
            m.watermark.set(result.watermark)


@contextmanager
def _state_errors() -> Iterator[None]:
    """A Redis failure is a ServiceError (the runner retries with backoff, committing nothing);
    Redis refusing the consumer is a DependencyRefused (the runner stops)."""
    try:
        yield
    except Exception as exc:
        if isinstance(exc, REDIS_REFUSALS):
            raise DependencyRefused(
                f"Redis refused the alerts consumer ({exc!r}); fix REDIS_USERNAME and "
                "REDIS_PASSWORD, or the user's ACL (the state uses Lua scripts: +@scripting)"
            ) from exc
        if isinstance(exc, redis.RedisError):
            raise ServiceError(f"Redis state store failed: {exc!r}") from exc
        raise


def _partition_name(topic: str, partition: int) -> str:
    return f"{topic}:{partition}"


def unread_partitions(known: Iterable[str], group: Mapping[str, Collection[int]]) -> dict[str, str]:
    """Which `known` watermark partitions ("topic:number") the group does not read, given
    `group` (each input topic's partitions), each with why: TOPIC_NOT_READ or PARTITION_GONE.
    A topic listed without partitions (being recreated, or gone) keeps its entries."""
    out = {}
    for name in known:
        topic, _, number = name.rpartition(":")
        if topic not in group:
            out[name] = TOPIC_NOT_READ
        elif group[topic] and not (number.isdigit() and int(number) in group[topic]):
            out[name] = PARTITION_GONE
    return out
