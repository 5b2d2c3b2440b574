"""`InMemoryStateStore`: the process-local twin of the Redis store (tests, dry runs).

Its webhook outbox is in-process too (`core.webhook.InMemoryOutbox`): deliveries survive a new
sender in the same process, not a restart, and are not shared with other processes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence

from threefold.apps.alerts.config import WEBHOOK_OUTBOX_MAX
from threefold.apps.alerts.state.store import (
    ALERT_LEASE_S,
    CLAIMED,
    CLOSED,
    COOLDOWN,
    COUNTED,
    DUPLICATE,
    FEED_READ_COUNT,
    HEARTBEAT_TTL_S,
    MAX_FEED,
    MAX_KEYS,
    MAX_SERIES,
    REPLAY_MEMORY_S,
    SEEN,
    WindowClose,
    WindowRef,
    alert_order,
)
from threefold.apps.alerts.surge import Baseline
from threefold.apps.alerts.windows import Entry, WindowCounts
from threefold.core.webhook import InMemoryOutbox
from threefold.streaming.topic_probe import Offsets


class InMemoryStateStore:
    """Process-local state with the same semantics as the Redis store (lost on exit)."""

    def __init__(
        self,
        *,
        webhook_limit: int = WEBHOOK_OUTBOX_MAX,
        ttl_s: int = 7 * 24 * 3600,
        max_keys: int = MAX_KEYS,
    ) -> None:
        self.ttl_s = ttl_s  # only for the key list (nothing else here expires)
        self.max_keys = max_keys
        self._watermark: float | None = None
        self._partitions: dict[str, float] = {}
        self._windows: dict[WindowRef, WindowCounts] = {}
        self._seen: dict[WindowRef, set[str]] = {}
        # closed window -> (when to forget, the ids it counted): redeliveries are not late
        self._closed_seen: dict[WindowRef, tuple[float, set[str]]] = {}
        self._baselines: dict[str, Baseline] = {}
        self._cooldown: dict[str, int] = {}
        self._claimed: set[str] = set()
        self._outbox: dict[str, dict] = {}
        self._leases: dict[str, tuple[str, float]] = {}  # alert id -> (owner, expiry)
        self._sending_notes: dict[str, Offsets] = {}  # alert id -> alerts topic end offsets
        self._history: dict[str, list[dict]] = {}
        self._keys: dict[str, int] = {}
        self._feed: list[tuple[str, dict]] = []
        self._feed_appended = 0  # entry ids are "<n>-0", like a Redis stream's
        self._feed_changed = threading.Condition()
        self._webhooks = InMemoryOutbox(webhook_limit)
        self._heartbeats: dict[str, dict] = {}

    def add_entries(self, entries: Sequence[Entry], max_examples: int) -> list[int]:
        out = []
        for entry in entries:
            ref = (entry.key, entry.start, entry.end)
            if self._watermark is not None and entry.end <= self._watermark:
                counted = self._seen.get(ref) or self._closed_seen.get(ref, (0.0, set()))[1]
                out.append(SEEN if entry.message_id in counted else CLOSED)
                continue
            seen = self._seen.setdefault(ref, set())
            if entry.message_id in seen:
                out.append(SEEN)
                continue
            seen.add(entry.message_id)
            counts = self._windows.setdefault(ref, WindowCounts(entry.key, entry.start, entry.end))
            counts.total += 1
            setattr(counts, entry.sentiment, getattr(counts, entry.sentiment) + 1)
            negative = entry.sentiment == "negative"
            if entry.example and negative and len(counts.examples) < max_examples:
                counts.examples.append(entry.example)
            if entry.model and entry.model not in counts.models:
                counts.models = sorted([*counts.models, entry.model])
            self._keys[entry.key] = max(self._keys.get(entry.key, 0), entry.end)
            out.append(COUNTED)
        self._trim_keys()
        return out

    def _trim_keys(self) -> None:
        """Drop keys whose latest window is older than the watermark minus the TTL, and the
        oldest beyond `max_keys` (as the Redis store does)."""
        oldest = self._watermark - self.ttl_s if self._watermark is not None else None
        kept = sorted(
            ((end, key) for key, end in self._keys.items() if oldest is None or end >= oldest),
            reverse=True,
        )[: self.max_keys]
        if len(kept) < len(self._keys):
            self._keys = {key: end for end, key in kept}

    def watermark(self) -> float | None:
        return self._watermark

    def partition_watermarks(self) -> dict[str, float]:
        return dict(self._partitions)

    def advance_watermark(
        self, by_partition: dict[str, float], idle: Sequence[str] = ()
    ) -> float | None:
        for partition in idle:
            self._partitions.pop(partition, None)
        for partition, value in by_partition.items():
            self._partitions[partition] = max(value, self._partitions.get(partition, value))
        if self._partitions:
            lowest = min(self._partitions.values())
            if self._watermark is None or lowest > self._watermark:
                self._watermark = lowest
        return self._watermark

    def due_windows(self, watermark: float) -> list[WindowRef]:
        due = [ref for ref in self._windows if ref[2] <= watermark]
        return sorted(due, key=lambda ref: (ref[2], ref[1], ref[0]))

    def counts(self, windows: Sequence[WindowRef]) -> list[WindowCounts]:
        out = []
        for key, start, end in windows:
            found = self._windows.get((key, start, end))
            copy = WindowCounts(key, start, end)
            if found is not None:
                copy.total, copy.negative = found.total, found.negative
                copy.neutral, copy.positive = found.neutral, found.positive
                copy.examples = list(found.examples)
                copy.models = list(found.models)
            out.append(copy)
        return out

    def baselines(self, keys: Iterable[str]) -> dict[str, Baseline]:
        return {key: self._baselines[key] for key in keys if key in self._baselines}

    def counts_and_baselines(
        self, windows: Sequence[WindowRef]
    ) -> tuple[list[WindowCounts], dict[str, Baseline]]:
        return self.counts(windows), self.baselines({ref[0] for ref in windows})

    def claim_alert(self, alert: dict, cooldown_s: int) -> str:
        alert_id, key, end = alert["alert_id"], alert["key"], int(alert["window_end_ts"])
        if alert_id in self._claimed:
            return DUPLICATE
        last = self._cooldown.get(key)
        if last is not None and end - last < cooldown_s:
            return COOLDOWN
        self._claimed.add(alert_id)
        self._cooldown[key] = end
        self._outbox[alert_id] = alert
        return CLAIMED

    def close_windows(self, closes: Sequence[WindowClose]) -> list[int]:
        return [self.close_window(*close) for close in closes]

    def close_window(self, counts: WindowCounts, expected_windows: int, new: Baseline) -> int:
        """Fold a window into its key's baseline: 1 closed, 0 already closed, -1 stale."""
        ref = (counts.key, counts.start, counts.end)
        if ref not in self._windows:
            return 0
        current = self._baselines.get(counts.key)
        if (current.windows if current else 0) != expected_windows:
            return -1
        self._baselines[counts.key] = new
        history = self._history.setdefault(counts.key, [])
        history.append(counts.to_dict())
        del history[:-MAX_SERIES]
        del self._windows[ref]
        now = time.time()
        while self._closed_seen:  # oldest first: every entry lives REPLAY_MEMORY_S
            oldest = next(iter(self._closed_seen))
            if self._closed_seen[oldest][0] > now:
                break
            del self._closed_seen[oldest]
        self._closed_seen[ref] = (now + REPLAY_MEMORY_S, self._seen.pop(ref, set()))
        return 1

    def pending_alerts(self) -> list[dict]:
        return sorted(self._outbox.values(), key=alert_order)

    def lease_pending_alerts(self, owner: str, lease_s: int = ALERT_LEASE_S) -> list[dict]:
        now = time.time()
        taken = []
        for alert_id, alert in self._outbox.items():
            holder, expiry = self._leases.get(alert_id, (owner, now))
            if holder == owner or expiry <= now:
                self._leases[alert_id] = (owner, now + lease_s)
                taken.append(alert)
        return sorted(taken, key=alert_order)

    def release_alerts(self, alerts: Sequence[dict], owner: str) -> None:
        for alert in alerts:
            if self._leases.get(alert["alert_id"], ("",))[0] == owner:
                del self._leases[alert["alert_id"]]

    def mark_sending(self, alerts: Sequence[dict], offsets: Offsets) -> None:
        for alert in alerts:
            self._sending_notes.setdefault(alert["alert_id"], dict(offsets))

    def sending_marks(self, alerts: Sequence[dict]) -> dict[str, Offsets]:
        ids = [a["alert_id"] for a in alerts]
        return {i: dict(self._sending_notes[i]) for i in ids if i in self._sending_notes}

    def ack_alerts(self, alerts: Sequence[dict], *, webhook: bool = False) -> list[str]:
        dropped: list[str] = []
        with self._feed_changed:
            for alert in alerts:
                self._leases.pop(alert["alert_id"], None)
                self._sending_notes.pop(alert["alert_id"], None)
                if self._outbox.pop(alert["alert_id"], None) is not None:
                    self._feed_appended += 1
                    self._feed.append((f"{self._feed_appended}-0", alert))
                    if webhook:
                        dropped += self._webhooks.put(alert["alert_id"], alert)
            del self._feed[:-MAX_FEED]
            self._feed_changed.notify_all()
        return dropped

    def webhook_outbox(self) -> InMemoryOutbox:
        """In-process: lost on exit, not shared with other processes."""
        return self._webhooks

    def aggregation_keys(self) -> list[str]:
        return sorted(self._keys, key=lambda k: (-self._keys[k], k))

    def history(self, key: str, limit: int = 100) -> list[dict]:
        return list(self._history.get(key, [])[-limit:])

    def open_windows(self, key: str | None = None) -> list[WindowCounts]:
        refs = sorted(ref for ref in self._windows if key is None or ref[0] == key)
        return self.counts(refs)

    def recent_alerts(self, limit: int = 50) -> list[tuple[str, dict]]:
        return list(reversed(self._feed[-limit:]))

    def read_feed(self, last_id: str, block_ms: int) -> list[tuple[str, dict]]:
        """Alerts acknowledged after `last_id` ("$" = only new ones), waiting up to block_ms
        (0 waits until one arrives, like XREAD)."""
        with self._feed_changed:
            after = self._feed_appended if last_id == "$" else _sequence(last_id)
            self._feed_changed.wait_for(
                lambda: self._feed_appended > after, timeout=block_ms / 1000 or None
            )
            newer = [(entry_id, a) for entry_id, a in self._feed if _sequence(entry_id) > after]
            return newer[:FEED_READ_COUNT]

    def write_heartbeat(self, consumer: str, beat: dict) -> None:
        oldest = beat["written_at"] - HEARTBEAT_TTL_S
        beats = {c: b for c, b in self._heartbeats.items() if b["written_at"] >= oldest}
        self._heartbeats = {**beats, consumer: dict(beat)}

    def heartbeats(self) -> dict[str, dict]:
        return {consumer: dict(beat) for consumer, beat in self._heartbeats.items()}


def _sequence(entry_id: str) -> int:
    return int(entry_id.split("-", 1)[0])
