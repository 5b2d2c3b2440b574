"""The `StateStore` contract: window, baseline, cool-down and alert state kept across batches.

How the state survives restarts and at-least-once redelivery (Kafka offsets are committed only
after a batch's outputs are flushed, so a crash replays the uncommitted messages):

* Counting is idempotent: each (key, window) keeps the set of message ids it counted; adding an
  id that is already there changes nothing (Redis: SADD + HINCRBY in one Lua script). A
  closed window keeps that set for REPLAY_MEMORY_S, so a redelivered message is SEEN (a
  redelivery), not CLOSED (late news that was never aggregated).
* Event time is tracked per input partition (Kafka orders messages only within one): each
  partition's watermark is its highest event time minus the grace; the store's watermark is
  the lowest of them, only moves forward, and is stored. A window whose end is at or before it
  is closed, and messages for it are reported late (counted in a metric, not aggregated).
  Partitions are registered when assigned (with no event time yet, so they hold the
  watermark back until their first message); a partition idle for a while is dropped from
  the minimum (the consumer decides, `partition_idle_s`) and rejoins with its next message.
  After each rebalance the consumer drops the partitions its group no longer reads (a topic
  no longer consumed, or a partition its topic no longer has), so an input topic changed or
  recreated with fewer partitions under the same prefix does not hold the watermark for good.
* The aggregation keys are listed with their latest window's end (`aggregation_keys`, newest
  first); a key leaves the list once that end is older than the watermark minus the state TTL
  (its history and baseline have expired), and only the MAX_KEYS newest stay, so headlines
  naming new tickers cannot grow it without end.
* Closing a window (fold it into the EWMA baseline, append it to the key's history, drop its
  counts) is one atomic compare-and-set on the number of windows in the baseline, so two
  consumers racing to close it (during a rebalance) fold it in exactly once.
* An alert is claimed atomically before it is published: SET NX on its deterministic id, the
  cool-down check, and a copy in an outbox hash. A crash after the claim leaves it in the outbox
  and the next consumer publishes it, so no surge is lost; the id marker stops it being claimed
  twice. Every consumer publishes the outbox, each alert under a lease (holder + expiry) so two
  of them never send the same one; a dead holder's lease ends after ALERT_LEASE_S. Before its
  first send, the alerts topic's end offsets are noted with the alert (`mark_sending`): a crash
  between the broker acknowledging the alert and the outbox deletion leaves that note, and the
  next publisher reads the topic from there and resends only if the alert is not in it. (Only a
  publisher stalled past its lease while its send is still in flight can publish an alert
  twice; it then has the same alert_id.)
* Acknowledging an alert (out of the outbox, into the live feed and, with a webhook, into the
  webhook outbox) is one atomic step, so a retried acknowledgement after a lost answer never
  skips the feed or the webhook. The webhook outbox is bounded (`webhook_outbox_max`: the
  oldest delivery is dropped, and reported, to make room); its deliveries are claimed under a
  lease by any consumer's `core.webhook.OutboxSender` and leave it after a 2xx, or after a 4xx
  that retrying cannot fix, into a capped record of rejected deliveries.
* Each consumer writes a heartbeat (`write_heartbeat`, every few seconds while its Redis
  answers): its runner's state and last poll, for the dashboard's /healthz. Redis: the hash
  `<prefix>consumers`, one field per consumer (its id) holding the heartbeat as JSON; the key
  expires HEARTBEAT_TTL_S after the last write, and each write drops the consumers not seen for
  that long (gone), by Redis's clock (`<prefix>consumers:seen`), not the hosts' clocks.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from threefold.apps.alerts.surge import Baseline
from threefold.apps.alerts.windows import Entry, WindowCounts
from threefold.core.webhook import WebhookOutbox
from threefold.streaming.topic_probe import Offsets

CLAIMED, DUPLICATE, COOLDOWN = "claimed", "duplicate", "cooldown"
COUNTED, SEEN, CLOSED = 1, 0, -1
MAX_SERIES = 500
MAX_KEYS = 10_000  # aggregation keys listed at most (those with the latest windows)
MAX_FEED = 1000
FEED_READ_COUNT = 100  # alerts returned by one read_feed call at most
ALERT_LEASE_S = 20  # a publisher's hold on the outbox alerts it is sending
REPLAY_MEMORY_S = 3600  # how long a closed window remembers the ids it counted (redeliveries)
HEARTBEAT_TTL_S = 60  # a consumer's heartbeat is dropped this long after it was written

WindowRef = tuple[str, int, int]  # (key, start, end)
# (final counts, windows in the baseline it was computed from, the baseline with it folded in)
WindowClose = tuple[WindowCounts, int, Baseline]


class StateStore(Protocol):
    """What the alert pipeline and the dashboard need to keep between batches and restarts."""

    def add_entries(self, entries: Sequence[Entry], max_examples: int) -> list[int]:
        """Count each entry once per message id: COUNTED, SEEN or CLOSED (late) per entry."""
        ...

    def watermark(self) -> float | None: ...

    def partition_watermarks(self) -> dict[str, float]:
        """Each partition in the watermark's minimum: its watermark (0: no message yet)."""
        ...

    def advance_watermark(
        self, by_partition: dict[str, float], idle: Sequence[str] = ()
    ) -> float | None:
        """Raise partitions' watermarks, drop `idle` ones; returns the store's watermark."""
        ...

    def due_windows(self, watermark: float) -> list[WindowRef]: ...

    def counts(self, windows: Sequence[WindowRef]) -> list[WindowCounts]: ...

    def baselines(self, keys: Iterable[str]) -> dict[str, Baseline]: ...

    def counts_and_baselines(
        self, windows: Sequence[WindowRef]
    ) -> tuple[list[WindowCounts], dict[str, Baseline]]: ...

    def claim_alert(self, alert: dict, cooldown_s: int) -> str:
        """CLAIMED (now in the outbox), DUPLICATE or COOLDOWN."""
        ...

    def close_windows(self, closes: Sequence[WindowClose]) -> list[int]:
        """Per window: 1 closed, 0 already closed, -1 stale baseline (recompute)."""
        ...

    def close_window(self, counts: WindowCounts, expected_windows: int, new: Baseline) -> int: ...

    def pending_alerts(self) -> list[dict]: ...

    def lease_pending_alerts(self, owner: str, lease_s: int = ALERT_LEASE_S) -> list[dict]: ...

    def release_alerts(self, alerts: Sequence[dict], owner: str) -> None: ...

    def mark_sending(self, alerts: Sequence[dict], offsets: Offsets) -> None:
        """Before the first send of each alert, note the alerts topic's end offsets (an
        earlier note is kept); `ack_alerts` drops the note."""
        ...

    def sending_marks(self, alerts: Sequence[dict]) -> dict[str, Offsets]:
        """The notes of those `alerts` that were sent before (maybe by a publisher that died)."""
        ...

    def ack_alerts(self, alerts: Sequence[dict], *, webhook: bool = False) -> list[str]:
        """Mark alerts published, atomically: drop them from the outbox, append them to the
        feed and, with `webhook`, queue them in the webhook outbox. Returns the ids of queued
        webhook deliveries dropped (oldest first) to keep that outbox within its limit."""
        ...

    def webhook_outbox(self) -> WebhookOutbox:
        """The webhook deliveries `ack_alerts(..., webhook=True)` queues."""
        ...

    def aggregation_keys(self) -> list[str]: ...

    def history(self, key: str, limit: int = 100) -> list[dict]: ...

    def open_windows(self, key: str | None = None) -> list[WindowCounts]: ...

    def recent_alerts(self, limit: int = 50) -> list[tuple[str, dict]]:
        """The newest feed entries (id, alert), newest first."""
        ...

    def read_feed(self, last_id: str, block_ms: int) -> list[tuple[str, dict]]:
        """Feed entries after `last_id` ("$" = only new ones), waiting up to block_ms."""
        ...

    def write_heartbeat(self, consumer: str, beat: dict) -> None:
        """Note `consumer`'s heartbeat (a JSON object with `written_at`, Unix seconds), in
        place of its last one; heartbeats older than HEARTBEAT_TTL_S are dropped."""
        ...

    def heartbeats(self) -> dict[str, dict]:
        """The consumers' latest heartbeats by consumer id (those of the last
        HEARTBEAT_TTL_S at least)."""
        ...


def alert_order(alert: dict) -> tuple:
    """Sort key of outbox alerts: window end, then key."""
    return alert["window_end_ts"], alert["key"]
