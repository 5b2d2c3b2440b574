"""Window, baseline, cool-down and alert state: in memory (tests, dry runs) or in Redis.

How the state survives restarts and at-least-once redelivery (Kafka offsets are committed only
after a batch's outputs are flushed, so a crash replays the uncommitted messages):

* Counting is idempotent: each (key, window) keeps the set of message ids it counted; adding an
  id that is already there changes nothing (Redis: SADD + HINCRBY in one Lua script).
* Event time is tracked per input partition (Kafka orders messages only within one): each
  partition's watermark is its highest event time minus the grace; the store's watermark is
  the lowest of them, only moves forward, and is stored. A window whose end is at or before it
  is closed, and messages for it are reported late (counted in a metric, not aggregated).
  Partitions are registered when assigned (with no event time yet, so they hold the
  watermark back until their first message); a partition idle for a while is dropped from
  the minimum (the consumer decides, `partition_idle_s`) and rejoins with its next message.
* Closing a window (fold it into the EWMA baseline, append it to the key's history, drop its
  counts) is one atomic compare-and-set on the number of windows in the baseline, so two
  consumers racing to close it (during a rebalance) fold it in exactly once.
* An alert is claimed atomically before it is published: SET NX on its deterministic id, the
  cool-down check, and a copy in an outbox hash. A crash after the claim leaves it in the outbox
  and the next consumer publishes it, so no surge is lost; the id marker stops it being claimed
  twice. Every consumer publishes the outbox, each alert under a lease (holder + expiry) so two
  of them never send the same one; a dead holder's lease ends after ALERT_LEASE_S. Only a crash
  between the broker acknowledging the alert and the outbox deletion (a few milliseconds) can
  publish an alert twice; it then has the same alert_id (dedupe on it).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from typing import Protocol

from threefold.apps.alerts.surge import Baseline
from threefold.apps.alerts.windows import Entry, WindowCounts

CLAIMED, DUPLICATE, COOLDOWN = "claimed", "duplicate", "cooldown"
COUNTED, SEEN, CLOSED = 1, 0, -1
MAX_SERIES = 500
MAX_FEED = 1000
ALERT_LEASE_S = 20  # a publisher's hold on the outbox alerts it is sending
ADD_CHUNK = 500  # window entries per Redis script call (keeps each call well under 10 ms)

WindowRef = tuple[str, int, int]  # (key, start, end)
# (final counts, windows in the baseline it was computed from, the baseline with it folded in)
WindowClose = tuple[WindowCounts, int, Baseline]


class StateStore(Protocol):
    """What the alert pipeline needs to keep between batches and across restarts."""

    def add_entries(self, entries: Sequence[Entry], max_examples: int) -> list[int]: ...
    def watermark(self) -> float | None: ...
    def advance_watermark(
        self, by_partition: dict[str, float], idle: Sequence[str] = ()
    ) -> float | None: ...
    def due_windows(self, watermark: float) -> list[WindowRef]: ...
    def counts(self, windows: Sequence[WindowRef]) -> list[WindowCounts]: ...
    def baselines(self, keys: Iterable[str]) -> dict[str, Baseline]: ...
    def counts_and_baselines(
        self, windows: Sequence[WindowRef]
    ) -> tuple[list[WindowCounts], dict[str, Baseline]]: ...
    def claim_alert(self, alert: dict, cooldown_s: int) -> str: ...
    def close_windows(self, closes: Sequence[WindowClose]) -> list[int]: ...
    def pending_alerts(self) -> list[dict]: ...
    def lease_pending_alerts(self, owner: str, lease_s: int = ...) -> list[dict]: ...
    def release_alerts(self, alerts: Sequence[dict], owner: str) -> None: ...
    def ack_alerts(self, alerts: Sequence[dict]) -> None: ...
    def aggregation_keys(self) -> list[str]: ...
    def history(self, key: str, limit: int = 100) -> list[dict]: ...
    def open_windows(self, key: str | None = None) -> list[WindowCounts]: ...
    def recent_alerts(self, limit: int = 50) -> list[tuple[str, dict]]: ...


def _member(key: str, start: int, end: int) -> str:
    return f"{start}:{end}:{key}"


def _parse_member(member: str) -> WindowRef:
    start, end, key = member.split(":", 2)
    return key, int(start), int(end)


def _summary(counts: WindowCounts) -> dict:
    return counts.to_dict()


def _alert_order(alert: dict) -> tuple:
    return alert["window_end_ts"], alert["key"]


def _baselines(keys: Sequence[str], hashes: Sequence[dict]) -> dict[str, Baseline]:
    return {
        key: Baseline(float(values["share"]), float(values["volume"]), int(values["windows"]))
        for key, values in zip(keys, hashes, strict=True)
        if values
    }


class InMemoryStateStore:
    """Process-local state with the same semantics as the Redis store (lost on exit)."""

    def __init__(self) -> None:
        self._watermark: float | None = None
        self._partitions: dict[str, float] = {}
        self._windows: dict[WindowRef, WindowCounts] = {}
        self._seen: dict[WindowRef, set[str]] = {}
        self._baselines: dict[str, Baseline] = {}
        self._cooldown: dict[str, int] = {}
        self._claimed: set[str] = set()
        self._outbox: dict[str, dict] = {}
        self._leases: dict[str, tuple[str, float]] = {}  # alert id -> (owner, expiry)
        self._history: dict[str, list[dict]] = {}
        self._keys: dict[str, int] = {}
        self._feed: list[tuple[str, dict]] = []

    def add_entries(self, entries: Sequence[Entry], max_examples: int) -> list[int]:
        out = []
        for entry in entries:
            ref = (entry.key, entry.start, entry.end)
            if self._watermark is not None and entry.end <= self._watermark:
                out.append(CLOSED)
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
            self._keys[entry.key] = max(self._keys.get(entry.key, 0), entry.end)
            out.append(COUNTED)
        return out

    def watermark(self) -> float | None:
        return self._watermark

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
        history.append(_summary(counts))
        del history[:-MAX_SERIES]
        del self._windows[ref]
        self._seen.pop(ref, None)
        return 1

    def pending_alerts(self) -> list[dict]:
        return sorted(self._outbox.values(), key=_alert_order)

    def lease_pending_alerts(self, owner: str, lease_s: int = ALERT_LEASE_S) -> list[dict]:
        now = time.time()
        taken = []
        for alert_id, alert in self._outbox.items():
            holder, expiry = self._leases.get(alert_id, (owner, now))
            if holder == owner or expiry <= now:
                self._leases[alert_id] = (owner, now + lease_s)
                taken.append(alert)
        return sorted(taken, key=_alert_order)

    def release_alerts(self, alerts: Sequence[dict], owner: str) -> None:
        for alert in alerts:
            if self._leases.get(alert["alert_id"], ("",))[0] == owner:
                del self._leases[alert["alert_id"]]

    def ack_alerts(self, alerts: Sequence[dict]) -> None:
        for alert in alerts:
            self._leases.pop(alert["alert_id"], None)
            if self._outbox.pop(alert["alert_id"], None) is not None:
                self._feed.append((f"{len(self._feed) + 1}-0", alert))
        del self._feed[:-MAX_FEED]

    def aggregation_keys(self) -> list[str]:
        return sorted(self._keys, key=lambda k: (-self._keys[k], k))

    def history(self, key: str, limit: int = 100) -> list[dict]:
        return list(self._history.get(key, [])[-limit:])

    def open_windows(self, key: str | None = None) -> list[WindowCounts]:
        refs = sorted(ref for ref in self._windows if key is None or ref[0] == key)
        return self.counts(refs)

    def recent_alerts(self, limit: int = 50) -> list[tuple[str, dict]]:
        return list(reversed(self._feed[-limit:]))


_ADD = """
local wm = redis.call('GET', KEYS[1])
wm = wm and tonumber(wm)
local prefix, max_examples, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local out = {}
for i = 4, #ARGV, 6 do
  local key, start, stop = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local id, sentiment, example = ARGV[i + 3], ARGV[i + 4], ARGV[i + 5]
  local counts = prefix .. 'w:' .. key .. ':' .. start
  local seen = prefix .. 'seen:' .. key .. ':' .. start
  local examples = prefix .. 'ex:' .. key .. ':' .. start
  if wm and tonumber(stop) <= wm then
    out[#out + 1] = -1
  elseif redis.call('SADD', seen, id) == 0 then
    out[#out + 1] = 0
  else
    redis.call('HINCRBY', counts, 'total', 1)
    redis.call('HINCRBY', counts, sentiment, 1)
    local wanted = example ~= '' and sentiment == 'negative'
    if wanted and redis.call('LLEN', examples) < max_examples then
      redis.call('RPUSH', examples, example)
      redis.call('EXPIRE', examples, ttl)
    end
    redis.call('ZADD', KEYS[2], stop, start .. ':' .. stop .. ':' .. key)
    redis.call('ZADD', KEYS[3], 'GT', stop, key)
    redis.call('EXPIRE', counts, ttl)
    redis.call('EXPIRE', seen, ttl)
    out[#out + 1] = 1
  end
end
return out
"""

_ADVANCE = """
local pairs_end = 1 + 2 * tonumber(ARGV[1])
for i = pairs_end + 1, #ARGV do
  redis.call('HDEL', KEYS[2], ARGV[i])
end
for i = 2, pairs_end, 2 do
  local old = redis.call('HGET', KEYS[2], ARGV[i])
  if (not old) or tonumber(ARGV[i + 1]) > tonumber(old) then
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  end
end
local lowest = nil
for _, v in ipairs(redis.call('HVALS', KEYS[2])) do
  local n = tonumber(v)
  if lowest == nil or n < lowest then lowest = n end
end
local cur = redis.call('GET', KEYS[1])
if lowest ~= nil and ((not cur) or lowest > tonumber(cur)) then
  redis.call('SET', KEYS[1], tostring(lowest))
  return tostring(lowest)
end
return cur
"""

_CLAIM = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local last = redis.call('GET', KEYS[2])
if last and tonumber(ARGV[2]) - tonumber(last) < tonumber(ARGV[3]) then return -1 end
redis.call('SET', KEYS[1], '1', 'EX', ARGV[5])
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[5])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[4])
return 1
"""

_CLOSE = """
local prefix, max_series, ttl = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local out = {}
for i = 4, #ARGV, 8 do
  local key, start, stop, expected = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
  local member = start .. ':' .. stop .. ':' .. key
  local base = prefix .. 'base:' .. key
  local hist = prefix .. 'hist:' .. key
  if not redis.call('ZSCORE', KEYS[1], member) then
    out[#out + 1] = 0
  elseif tonumber(redis.call('HGET', base, 'windows') or '0') ~= expected then
    out[#out + 1] = -1
  else
    redis.call('ZREM', KEYS[1], member)
    redis.call('HSET', base, 'share', ARGV[i + 4], 'volume', ARGV[i + 5], 'windows', ARGV[i + 6])
    redis.call('EXPIRE', base, ttl)
    redis.call('ZADD', hist, start, ARGV[i + 7])
    redis.call('ZREMRANGEBYRANK', hist, 0, -(max_series + 1))
    redis.call('EXPIRE', hist, ttl)
    local suffix = key .. ':' .. start
    redis.call('DEL', prefix .. 'w:' .. suffix, prefix .. 'seen:' .. suffix)
    redis.call('DEL', prefix .. 'ex:' .. suffix)
    out[#out + 1] = 1
  end
end
return out
"""

_LEASE = """
local now = tonumber(redis.call('TIME')[1])
local out = {}
local entries = redis.call('HGETALL', KEYS[1])
for i = 1, #entries, 2 do
  local lease = redis.call('HGET', KEYS[2], entries[i])
  local free = not lease
  if lease then
    local bar = string.find(lease, '|', 1, true)
    local holder, expiry = string.sub(lease, 1, bar - 1), tonumber(string.sub(lease, bar + 1))
    free = holder == ARGV[1] or expiry <= now
  end
  if free then
    redis.call('HSET', KEYS[2], entries[i], ARGV[1] .. '|' .. (now + tonumber(ARGV[2])))
    out[#out + 1] = entries[i + 1]
  end
end
if #entries > 0 then redis.call('EXPIRE', KEYS[2], ARGV[3]) end
return out
"""

_RELEASE = """
local owner = ARGV[#ARGV] .. '|'
for i = 1, #ARGV - 1 do
  local lease = redis.call('HGET', KEYS[1], ARGV[i])
  if lease and string.sub(lease, 1, #owner) == owner then redis.call('HDEL', KEYS[1], ARGV[i]) end
end
return 0
"""


class RedisStateStore:
    """State in one Redis database under `prefix` (keys: wm, open, w:/seen:/ex: per window,
    base:/cool:/hist: per key, alert: per alert id, outbox, feed (a stream), keys).

    The Lua scripts touch several keys (the counting one builds window key names itself), so
    use a single Redis instance (not Redis Cluster).
    """

    def __init__(self, client, prefix: str, *, ttl_s: int = 7 * 24 * 3600) -> None:
        self.client = client
        self.prefix = prefix
        self.ttl_s = ttl_s
        self._add = client.register_script(_ADD)
        self._advance = client.register_script(_ADVANCE)
        self._claim = client.register_script(_CLAIM)
        self._close = client.register_script(_CLOSE)
        self._lease = client.register_script(_LEASE)
        self._release = client.register_script(_RELEASE)

    @classmethod
    def from_url(cls, url: str, prefix: str, **kw) -> RedisStateStore:
        import redis

        return cls(redis.Redis.from_url(url, decode_responses=True), prefix, **kw)

    def _k(self, *parts: object) -> str:
        return self.prefix + ":".join(str(p) for p in parts)

    def _window_keys(self, key: str, start: int) -> tuple[str, str, str]:
        return self._k("w", key, start), self._k("seen", key, start), self._k("ex", key, start)

    def add_entries(self, entries: Sequence[Entry], max_examples: int) -> list[int]:
        # One script call per chunk (window keys are built in Lua from the prefix, see _k and
        # _member): thousands of small commands cost more in the client than in Redis.
        statuses: list[int] = []
        for first in range(0, len(entries), ADD_CHUNK):
            args: list[object] = [self.prefix, max_examples, self.ttl_s]
            for e in entries[first : first + ADD_CHUNK]:
                args += [e.key, e.start, e.end, e.message_id, e.sentiment, e.example or ""]
            keys = [self._k("wm"), self._k("open"), self._k("keys")]
            statuses += [int(r) for r in self._add(keys=keys, args=args)]
        return statuses

    def watermark(self) -> float | None:
        value = self.client.get(self._k("wm"))
        return None if value is None else float(value)

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
            counts_key, _, examples_key = self._window_keys(key, start)
            pipe.hgetall(counts_key)
            pipe.lrange(examples_key, 0, -1)
        keys = self._queue_baselines(pipe, {ref[0] for ref in windows} if with_baselines else ())
        raw = pipe.execute()
        out = []
        for index, (key, start, end) in enumerate(windows):
            values, examples = raw[2 * index], raw[2 * index + 1]
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
                )
            )
        return out, _baselines(keys, raw[2 * len(windows) :])

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
        args: list[object] = [self.prefix, MAX_SERIES, self.ttl_s]
        for counts, expected_windows, new in closes:
            args += [
                counts.key,
                counts.start,
                counts.end,
                expected_windows,
                repr(new.share),
                repr(new.volume),
                new.windows,
                json.dumps(_summary(counts), sort_keys=True),
            ]
        return [int(r) for r in self._close(keys=[self._k("open")], args=args)]

    def close_window(self, counts: WindowCounts, expected_windows: int, new: Baseline) -> int:
        return self.close_windows([(counts, expected_windows, new)])[0]

    def pending_alerts(self) -> list[dict]:
        alerts = [json.loads(v) for v in self.client.hvals(self._k("outbox"))]
        return sorted(alerts, key=_alert_order)

    def lease_pending_alerts(self, owner: str, lease_s: int = ALERT_LEASE_S) -> list[dict]:
        """The pending alerts no other publisher holds, now held by `owner` for `lease_s`
        (it publishes them, then acknowledges them). Several consumers publish the outbox; the
        lease keeps them from sending the same alert, and ends if its holder dies."""
        found = self._lease(
            keys=[self._k("outbox"), self._k("outbox-leases")], args=[owner, lease_s, self.ttl_s]
        )
        return sorted((json.loads(v) for v in found), key=_alert_order)

    def release_alerts(self, alerts: Sequence[dict], owner: str) -> None:
        """Give up `owner`'s leases (sending failed): any publisher may take them at once."""
        if alerts:
            ids = [a["alert_id"] for a in alerts]
            self._release(keys=[self._k("outbox-leases")], args=[*ids, owner])

    def ack_alerts(self, alerts: Sequence[dict]) -> None:
        """Mark alerts published: drop them from the outbox and append them to the live feed."""
        for alert in alerts:
            # Only the consumer that removes the outbox entry appends it to the feed.
            self.client.hdel(self._k("outbox-leases"), alert["alert_id"])
            if self.client.hdel(self._k("outbox"), alert["alert_id"]):
                self.client.xadd(
                    self._k("feed"),
                    {"alert": json.dumps(alert, sort_keys=True)},
                    maxlen=MAX_FEED,
                    approximate=True,
                )

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
        found = self.client.xread({self._k("feed"): last_id}, block=block_ms, count=100)
        out = []
        for _, entries in found or []:
            out.extend((entry_id, json.loads(fields["alert"])) for entry_id, fields in entries)
        return out
