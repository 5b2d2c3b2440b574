"""Whether an alerts consumer runs, judged from the heartbeats the consumers write to Redis
(`StateStore.heartbeats()`), for the dashboard's /healthz.

A consumer is healthy when its heartbeat says "running" and both its `written_at` and its
`last_poll_at` are within STALE_INTERVALS heartbeat intervals of now. A fresh heartbeat with an
old last poll is a stuck consumer thread (the heartbeat is written by a thread of its own).
A running consumer whose alert publishing has been failing (`publish_failing_since`) for longer
than PUBLISH_FAILING_LIMIT_S is PUBLISH_FAILING: the whole is unhealthy then, even while others
run, since the alerts it holds or keeps retrying reach no one. Heartbeats of consumers older
than these fields read as before (no publishing state, no partition count).
Times are the consumers' clocks compared with the dashboard's: keep them in sync (NTP).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone

from threefold.apps.alerts.state.store import HEARTBEAT_TTL_S
from threefold.streaming.runner import HEARTBEAT_S

STALE_INTERVALS = 3  # a heartbeat, or a last poll, older than this many intervals is stale
# alert publishing failing this long is unhealthy; shorter is a broker hiccup it retries through
PUBLISH_FAILING_LIMIT_S = 60.0
RUNNING, STUCK, NONE, PUBLISH_FAILING = "running", "stuck", "none", "publish_failing"
# Which consumer the reason is about when none runs: the one closest to running first.
REPORT_ORDER = (STUCK, "dependency_down", "kafka_down", "starting", "stopped")
START_FIX = (
    "start one (`threefold alerts run`) with this dashboard's REDIS_URL and "
    "THREEFOLD_ALERTS_REDIS_PREFIX"
)


@dataclass(frozen=True)
class ConsumersHealth:
    """`state`: "publish_failing" when a running consumer's alerts have not reached Kafka for
    longer than the limit; else "running" when at least one consumer runs; else what the most
    telling one reports ("stuck", a runner state such as "dependency_down"), or "none" when no
    consumer wrote a heartbeat lately. `consumers`: one compact entry per heartbeat."""

    state: str
    reason: str = ""
    consumers: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.state == RUNNING


def assess_consumers(
    beats: Mapping[str, dict],
    now: float,
    key: str,
    *,
    publish_failing_limit_s: float = PUBLISH_FAILING_LIMIT_S,
) -> ConsumersHealth:
    """The consumers' health at `now` (Unix seconds) from their heartbeats in the Redis hash
    `key` (named in the reason when it is empty)."""
    judged = [
        _judge(consumer, beat, now, publish_failing_limit_s)
        for consumer, beat in sorted(beats.items())
    ]
    listed = [entry for entry, _ in judged]
    fresh = [entry for entry, is_fresh in judged if is_fresh]
    failing = [entry for entry in fresh if entry["state"] == PUBLISH_FAILING]
    if failing:
        told = max(failing, key=lambda entry: entry["publish_failing_s"])
        return ConsumersHealth(
            PUBLISH_FAILING, _publish_reason(told, beats[told["consumer"]]), listed
        )
    if any(entry["state"] == RUNNING for entry in fresh):
        return ConsumersHealth(RUNNING, consumers=listed)
    if not fresh:
        return ConsumersHealth(NONE, _silent_reason(listed, key), listed)
    told = min(fresh, key=lambda entry: _rank(entry["state"]))
    return ConsumersHealth(told["state"], _reason(told, beats[told["consumer"]], now), listed)


def describe_outage(status: Mapping[str, object], now: float) -> str:
    """The outage a runner status or heartbeat reports: since when, how many retries, why."""
    since = _number(status.get("down_since"))
    if since is None:
        when = "since an unknown time"
    else:
        retries = int(_number(status.get("retries")) or 0)
        counted = f"; {retries} retries" if retries else ""
        when = f"since {_utc(since)} ({max(0.0, now - since):.0f} s ago{counted})"
    reason = status.get("reason")
    return f"{when}: {reason}" if reason else when


def _judge(consumer: str, beat: dict, now: float, failing_limit_s: float) -> tuple[dict, bool]:
    """The consumer's compact entry and whether its heartbeat is fresh (a fresh one that says
    running with a stale last poll is STUCK; one whose alert publishing has failed for longer
    than `failing_limit_s` is PUBLISH_FAILING). An older consumer's heartbeat, without the
    publishing and partition fields, lists them as None."""
    stale_s = STALE_INTERVALS * (_number(beat.get("interval_s")) or HEARTBEAT_S)
    written_ago, polled_ago = _age(beat.get("written_at"), now), _age(beat.get("last_poll_at"), now)
    failing_s = _age(beat.get("publish_failing_since"), now)
    fresh = written_ago is not None and written_ago <= stale_s
    state = beat.get("state")
    if fresh and state == RUNNING and (polled_ago is None or polled_ago > stale_s):
        state = STUCK
    elif fresh and state == RUNNING and failing_s is not None and failing_s > failing_limit_s:
        state = PUBLISH_FAILING
    entry = {
        "consumer": consumer,
        "state": state,
        "written_s_ago": written_ago,
        "last_poll_s_ago": polled_ago,
        "partitions_assigned": _count(beat.get("partitions_assigned")),
        "alerts_undelivered": _count(beat.get("alerts_undelivered")),
        "publish_failing_s": failing_s,
    }
    return entry, fresh


def _silent_reason(listed: list[dict], key: str) -> str:
    if not listed:
        return (
            f"no alerts consumer has written a heartbeat in the last {HEARTBEAT_TTL_S} s (the "
            f"Redis hash {key} is empty), so no news reaches the charts, alerts or live feed. "
            f"Fix: {START_FIX} (a dashboard run without a consumer on purpose stays degraded)"
        )
    last = min(listed, key=lambda entry: _or_inf(entry["written_s_ago"]))
    ago = "long" if last["written_s_ago"] is None else f"{last['written_s_ago']:.0f} s"
    return (
        f"no alerts consumer has written a heartbeat for {ago} (the last, {last['consumer']}, "
        f"said {last['state']!r}): it stopped, hangs, or cannot reach this Redis. Fix: see its "
        f"log, or {START_FIX}"
    )


def _reason(entry: dict, beat: dict, now: float) -> str:
    who = f"alerts consumer {entry['consumer']}"
    state = entry["state"]
    if state == STUCK:
        polled = entry["last_poll_s_ago"]
        since = "yet" if polled is None else f"for {polled:.0f} s"
        return (
            f"{who} writes heartbeats but has not polled Kafka {since}: its consumer thread is "
            "stuck (a batch, model load or call that does not return). Fix: see its log, and "
            "restart it if it stays stuck"
        )
    if state == "dependency_down":
        return (
            f"{who} says its Redis is down or too slow {describe_outage(beat, now)}. It "
            "retries by itself; news waits in the input topic meanwhile. Fix: check the Redis "
            "of its REDIS_URL (reachable, and answering quickly: `redis-cli --latency`) and "
            "its log (event dependency_retry)"
        )
    if state == "kafka_down":
        return (
            f"{who} says Kafka is down {describe_outage(beat, now)}. It reconnects by itself. "
            "Fix: check that the broker runs and KAFKA_BOOTSTRAP_SERVERS points at it"
        )
    if state == "starting":
        return f"{who} is starting (joining its group, no poll yet); if that lasts, see its log"
    if state == "stopped":
        why = beat.get("reason") or "asked to stop"
        return f"{who} stopped ({why}). Fix: {START_FIX}"
    return f"{who} reports the state {state!r}, not running. Fix: see its log"


def _publish_reason(entry: dict, beat: dict) -> str:
    """Why a consumer's alert publishing is unhealthy: since when, what waits, the last error."""
    since = _utc(float(beat["publish_failing_since"]))
    waiting = entry["alerts_undelivered"]
    held = "its alerts wait" if waiting is None else f"{waiting} alert(s) wait"
    error = beat.get("publish_error")
    last = f"; last error: {error}" if isinstance(error, str) and error else ""
    return (
        f"alerts consumer {entry['consumer']} has not delivered alerts to Kafka for "
        f"{entry['publish_failing_s']:.0f} s (since {since}{last}): {held} in the "
        "Redis outbox (not lost) and it retries, but no alert reaches the alerts topic or the "
        "webhook meanwhile. Fix: check the broker of its KAFKA_BOOTSTRAP_SERVERS and the alerts "
        "topic (THREEFOLD_ALERTS_ALERTS_TOPIC), and its log (events "
        "alerts_publish_out_of_time, kafka_producer_replaced) and "
        'threefold_stream_producer_failing{producer="alerts"}'
    )


def _or_inf(age: float | None) -> float:
    return float("inf") if age is None else age


def _rank(state: str) -> int:
    return REPORT_ORDER.index(state) if state in REPORT_ORDER else len(REPORT_ORDER)


def _age(value: object, now: float) -> float | None:
    """Seconds since `value` (Unix seconds; none below 0, a clock ahead), None when missing."""
    when = _number(value)
    return None if when is None else round(max(0.0, now - when), 1)


def _count(value: object) -> int | None:
    """A count from a heartbeat; None when missing (an older consumer) or not a count."""
    number = _number(value)
    return None if number is None else int(number)


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _utc(when: float) -> str:
    return datetime.fromtimestamp(when, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
