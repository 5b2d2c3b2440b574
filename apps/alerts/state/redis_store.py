"""`RedisStateStore`: the alert pipeline's state in one Redis database, via Lua scripts."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from threefold.apps.alerts.config import WEBHOOK_OUTBOX_MAX
from threefold.apps.alerts.state.lua import lua_script
from threefold.apps.alerts.state.redis_webhooks import RedisWebhookOutbox, webhook_keys
from threefold.apps.alerts.state.store import (
    ALERT_LEASE_S,
    CLAIMED,
    COOLDOWN,
    DUPLICATE,
    FEED_READ_COUNT,
    HEARTBEAT_TTL_S,
    MAX_FEED,
    MAX_KEYS,
    MAX_SERIES,
    REPLAY_MEMORY_S,
    WindowClose,
    WindowRef,
    alert_order,
)
from threefold.apps.alerts.surge import Baseline
from threefold.apps.alerts.windows import Entry, WindowCounts
from threefold.streaming.topic_probe import Offsets

ADD_CHUNK = 500  # window entries per Redis script call (keeps each call well under 10 ms)


def _parse_member(member: str) -> WindowRef:
    start, end, key = member.split(":", 2)
    return key, int(start), int(end)


def _baselines(keys: Sequence[str], hashes: Sequence[dict]) -> dict[str, Baseline]:
    return {
        key: Baseline(
            float(values["share"]),
            float(values["volume"]),
            int(values["windows"]),
            values.get("model", ""),
            int(values.get("model_from", 0)),
        )
        for key, values in zip(keys, hashes, strict=True)
        if values
    }


class RedisStateStore:
    """State in one Redis database under `prefix` (keys: wm, open, w:/seen:/ex:/models: per window,
    base:/cool:/hist: per key, alert: per alert id, outbox, feed (a stream), keys, and the
    webhook outbox's keys, see `redis_webhooks`).

    The Lua scripts touch several keys (the counting one builds window key names itself), so
    use a single Redis instance (not Redis Cluster).
    """

    def __init__(
        self,
        client,
        prefix: str,
        *,
        ttl_s: int = 7 * 24 * 3600,
        webhook_limit: int = WEBHOOK_OUTBOX_MAX,
        max_keys: int = MAX_KEYS,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.ttl_s = ttl_s
        self.webhook_limit = webhook_limit
        self.max_keys = max_keys
        self._add = client.register_script(lua_script("count_entries"))
        self._advance = client.register_script(lua_script("advance_watermark"))
        self._claim = client.register_script(lua_script("claim_alert"))
        self._close = client.register_script(lua_script("close_windows"))
        self._lease = client.register_script(lua_script("lease_alerts"))
        self._release = client.register_script(lua_script("release_alerts"))
        self._ack = client.register_script(lua_script("ack_alerts"))
        self._heartbeat = client.register_script(lua_script("write_heartbeat"))

    def _k(self, *parts: object) -> str:
        return self.prefix + ":".join(str(p) for p in parts)

    def _window_keys(self, key: str, start: int) -> tuple[str, str, str, str]:
        """Its counts, counted ids, examples and scoring models' tags."""
        k = self._k
        return (
            k("w", key, start),
            k("seen", key, start),
            k("ex", key, start),
            k("models", key, start),
        )

    def add_entries(self, entries: Sequence[Entry], max_examples: int) -> list[int]:
        # One script call per chunk (window keys are built in Lua from the prefix, see _k and
        # _parse_member): thousands of small commands cost more in the client than in Redis.
        statuses: list[int] = []
        for first in range(0, len(entries), ADD_CHUNK):
            args: list[object] = [self.prefix, max_examples, self.ttl_s, self.max_keys]
            for e in entries[first : first + ADD_CHUNK]:
                args += [e.key, e.start, e.end, e.message_id, e.sentiment, e.example or "", e.model]
            keys = [self._k("wm"), self._k("open"), self._k("keys")]
            statuses += [int(r) for r in self._add(keys=keys, args=args)]
        return statuses

    def watermark(self) -> float | None:
        value = self.client.get(self._k("wm"))
        return None if value is None else float(value)

    def partition_watermarks(self) -> dict[str, float]:
        found = self.client.hgetall(self._k("wm:partitions"))
        return {name: float(value) for name, value in found.items()}

    def advance_watermark(
        self, by_partition: dict[str, float], idle: Sequence[str] = ()
    ) -> float | None:
        args: list[object] = [len(by_partition)]
        for partition, value in by_partition.items():
            args += [partition, repr(float(value))]
        args += list(idle)
        result = self._advance(keys=[self._k("wm"), self._k("wm:partitions")], args=args)
        return None if result is None else float(result)

    def due_windows(self, watermark: float) -> list[WindowRef]:
        members = self.client.zrangebyscore(self._k("open"), "-inf", watermark)
        return sorted((_parse_member(m) for m in members), key=lambda r: (r[2], r[1], r[0]))

    def counts(self, windows: Sequence[WindowRef]) -> list[WindowCounts]:
        return self.counts_and_baselines(windows, with_baselines=False)[0]

    def baselines(self, keys: Iterable[str]) -> dict[str, Baseline]:
        pipe = self.client.pipeline(transaction=False)
        keys = self._queue_baselines(pipe, keys)
        return _baselines(keys, pipe.execute())

    def counts_and_baselines(
        self, windows: Sequence[WindowRef], *, with_baselines: bool = True
    ) -> tuple[list[WindowCounts], dict[str, Baseline]]:
        """The windows' counts and (one round trip) the baselines of their keys."""
        pipe = self.client.pipeline(transaction=False)
        for key, start, _ in windows:
            counts_key, _, examples_key, models_key = self._window_keys(key, start)
            pipe.hgetall(counts_key)
            pipe.lrange(examples_key, 0, -1)
            pipe.smembers(models_key)
        keys = self._queue_baselines(pipe, {ref[0] for ref in windows} if with_baselines else ())
        raw = pipe.execute()
        out = []
        for index, (key, start, end) in enumerate(windows):
            values, examples, models = raw[3 * index : 3 * index + 3]
            out.append(
                WindowCounts(
                    key,
                    start,
                    end,
                    total=int(values.get("total", 0)),
                    negative=int(values.get("negative", 0)),
                    neutral=int(values.get("neutral", 0)),
                    positive=int(values.get("positive", 0)),
                    examples=list(examples),
                    models=sorted(models),
                )
            )
        return out, _baselines(keys, raw[3 * len(windows) :])

    def _queue_baselines(self, pipe, keys: Iterable[str]) -> list[str]:
        keys = sorted(keys)
        for key in keys:
            pipe.hgetall(self._k("base", key))
        return keys

    def claim_alert(self, alert: dict, cooldown_s: int) -> str:
        result = self._claim(
            keys=[
                self._k("alert", alert["alert_id"]),
                self._k("cool", alert["key"]),
                self._k("outbox"),
            ],
            args=[
                alert["alert_id"],
                int(alert["window_end_ts"]),
                cooldown_s,
                json.dumps(alert, sort_keys=True),
                self.ttl_s,
            ],
        )
        return {1: CLAIMED, 0: DUPLICATE, -1: COOLDOWN}[int(result)]

    def close_windows(self, closes: Sequence[WindowClose]) -> list[int]:
        """Fold windows into their keys' baselines in one script call: per window 1 closed,
        0 already closed, -1 stale baseline (another consumer closed one first: recompute)."""
        if not closes:
            return []
        args: list[object] = [self.prefix, MAX_SERIES, self.ttl_s, REPLAY_MEMORY_S]
        for counts, expected_windows, new in closes:
            args += [
                counts.key,
                counts.start,
                counts.end,
                expected_windows,
                repr(new.share),
                repr(new.volume),
                new.windows,
                new.model,
                new.model_from,
                json.dumps(counts.to_dict(), sort_keys=True),
            ]
        return [int(r) for r in self._close(keys=[self._k("open")], args=args)]

    def close_window(self, counts: WindowCounts, expected_windows: int, new: Baseline) -> int:
        return self.close_windows([(counts, expected_windows, new)])[0]

    def pending_alerts(self) -> list[dict]:
        alerts = [json.loads(v) for v in self.client.hvals(self._k("outbox"))]
        return sorted(alerts, key=alert_order)

    def lease_pending_alerts(self, owner: str, lease_s: int = ALERT_LEASE_S) -> list[dict]:
        """The pending alerts no other publisher holds, now held by `owner` for `lease_s`
        (it publishes them, then acknowledges them). Several consumers publish the outbox; the
        lease keeps them from sending the same alert, and ends if its holder dies."""
        found = self._lease(
            keys=[self._k("outbox"), self._k("outbox-leases")], args=[owner, lease_s, self.ttl_s]
        )
        return sorted((json.loads(v) for v in found), key=alert_order)

    def release_alerts(self, alerts: Sequence[dict], owner: str) -> None:
        """Give up `owner`'s leases (sending failed): any publisher may take them at once."""
        if alerts:
            ids = [a["alert_id"] for a in alerts]
            self._release(keys=[self._k("outbox-leases")], args=[*ids, owner])

    def mark_sending(self, alerts: Sequence[dict], offsets: Offsets) -> None:
        """Note the alerts topic's end offsets before the first send of each alert (an earlier
        note is kept): whoever publishes it after a crash reads the topic from there."""
        if not alerts:
            return
        note = json.dumps({str(p): o for p, o in offsets.items()}, sort_keys=True)
        pipe = self.client.pipeline(transaction=False)
        for alert in alerts:
            pipe.hsetnx(self._k("outbox-sent"), alert["alert_id"], note)
        pipe.expire(self._k("outbox-sent"), self.ttl_s)
        pipe.execute()

    def sending_marks(self, alerts: Sequence[dict]) -> dict[str, Offsets]:
        ids = [a["alert_id"] for a in alerts]
        if not ids:
            return {}
        notes = self.client.hmget(self._k("outbox-sent"), ids)
        return {
            alert_id: {int(p): int(o) for p, o in json.loads(note).items()}
            for alert_id, note in zip(ids, notes, strict=True)
            if note is not None
        }

    def ack_alerts(self, alerts: Sequence[dict], *, webhook: bool = False) -> list[str]:
        """Mark alerts published in one script call (all of it happens or none of it, so a
        retried ack after a lost answer finds the feed entry in place): drop them from the
        outbox and append them to the live feed, and with `webhook` queue their deliveries.
        Only the call that removes an alert's outbox entry appends or queues it."""
        if not alerts:
            return []
        args: list[object] = [MAX_FEED, self.webhook_limit if webhook else 0]
        for alert in alerts:
            args += [alert["alert_id"], json.dumps(alert, sort_keys=True)]
        keys = [self._k(name) for name in ("outbox", "outbox-leases", "outbox-sent", "feed")]
        return list(self._ack(keys=keys + webhook_keys(self.prefix), args=args))

    def webhook_outbox(self) -> RedisWebhookOutbox:
        """The webhook deliveries `ack_alerts(..., webhook=True)` queues, shared by replicas."""
        return RedisWebhookOutbox(self.client, self.prefix)

    def aggregation_keys(self) -> list[str]:
        return list(self.client.zrevrange(self._k("keys"), 0, -1))

    def history(self, key: str, limit: int = 100) -> list[dict]:
        return [json.loads(m) for m in self.client.zrange(self._k("hist", key), -limit, -1)]

    def open_windows(self, key: str | None = None) -> list[WindowCounts]:
        refs = [_parse_member(m) for m in self.client.zrange(self._k("open"), 0, -1)]
        refs = sorted(r for r in refs if key is None or r[0] == key)
        return self.counts(refs)

    def recent_alerts(self, limit: int = 50) -> list[tuple[str, dict]]:
        entries = self.client.xrevrange(self._k("feed"), count=limit)
        return [(entry_id, json.loads(fields["alert"])) for entry_id, fields in entries]

    def read_feed(self, last_id: str, block_ms: int) -> list[tuple[str, dict]]:
        """Alerts appended after `last_id` ("$" = only new ones), waiting up to block_ms."""
        found = self.client.xread({self._k("feed"): last_id}, block=block_ms, count=FEED_READ_COUNT)
        out = []
        for _, entries in found or []:
            out.extend((entry_id, json.loads(fields["alert"])) for entry_id, fields in entries)
        return out

    def write_heartbeat(self, consumer: str, beat: dict) -> None:
        """HSET in `<prefix>consumers` and, in the same script, HDEL of the consumers Redis has
        not seen for HEARTBEAT_TTL_S (by Redis's clock, in `<prefix>consumers:seen`: hosts
        whose clocks disagree never prune each other); both keys expire with the last write."""
        self._heartbeat(
            keys=[self._k("consumers"), self._k("consumers:seen")],
            args=[consumer, json.dumps(beat, sort_keys=True), HEARTBEAT_TTL_S],
        )

    def heartbeats(self) -> dict[str, dict]:
        beats = self.client.hgetall(self._k("consumers"))
        return {consumer: json.loads(value) for consumer, value in beats.items()}
