"""User histories: the seed log plus posted events, from Redis, or from this worker's own copy
while Redis is down. That copy holds only the newest `local_events` events, however many users
post (before 2026-12-06 it kept every posted event of every user: 50,000 users, 55 MB)."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from support.services import frozen

from threefold.apps.recs.event_spool import EventSpool
from threefold.apps.recs.events import Event
from threefold.apps.recs.history import UserHistories
from threefold.apps.recs.metrics import RecsMetrics
from threefold.apps.recs.redis_state import RedisState
from threefold.streaming.connections import RedisSettings

USERS = 600
KEPT = 50  # local_events
UNREACHABLE = "redis://127.0.0.1:1/0"


def state(url: str, prefix: str) -> RedisState:
    return RedisState(
        RedisSettings(url=url),
        prefix=prefix,
        metrics=RecsMetrics(CollectorRegistry()),
        timeout_seconds=0.2,
        retry_seconds=0.2,
    )


def event(user: str, n: int, kind: str = "view") -> Event:
    return Event(user, f"it-{n}", kind, 1_700_000_000.0 + n)


def post_one_event_per_user(histories: UserHistories, users: int = USERS) -> None:
    for start in range(0, users, 100):
        histories.record([event(f"user-{n}", n) for n in range(start, start + 100)])


def assert_bounded(histories: UserHistories) -> None:
    assert len(histories.local) == KEPT, "the newest local_events events, not one per user"
    assert histories.local.user_count == KEPT


@pytest.mark.integration
def test_with_redis_up_the_local_copy_stays_bounded_and_redis_serves_every_user(
    redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    histories = UserHistories(
        [], state(redis_url, redis_prefix), spool=EventSpool(tmp_path), local_events=KEPT
    )
    post_one_event_per_user(histories)
    assert_bounded(histories)
    assert histories.get("user-0") == [event("user-0", 0)], "from Redis: not forgotten"


def test_with_redis_down_the_local_copy_serves_recent_events_and_stays_bounded(
    tmp_path: Path,
) -> None:
    histories = UserHistories(
        [], state(UNREACHABLE, "down:"), spool=EventSpool(tmp_path), limit=3, local_events=KEPT
    )
    post_one_event_per_user(histories)
    assert_bounded(histories)
    assert histories.get(f"user-{USERS - 1}") == [event(f"user-{USERS - 1}", USERS - 1)]
    assert histories.get("user-0") == [], "the oldest events go first (it waits in the spool)"
    assert histories.spool.pending(), "nothing is lost: every event is spooled for Redis"

    shopper = [event("shopper", 1000, "purchase"), *(event("shopper", 1001 + n) for n in range(5))]
    histories.record(shopper)
    assert histories.get("shopper") == shopper[-3:], "the user's last `limit` events"
    assert histories.purchased("shopper") == {"it-1000"}, "bought before the last 3: kept"


def test_without_redis_the_local_copy_is_the_store_and_stays_bounded() -> None:
    histories = UserHistories([], state(None, "none:"), local_events=KEPT)
    post_one_event_per_user(histories)
    assert_bounded(histories)
    assert histories.get(f"user-{USERS - 1}") == [event(f"user-{USERS - 1}", USERS - 1)]


@pytest.mark.integration
def test_events_a_worker_saw_while_redis_was_up_serve_its_users_during_an_outage(
    hung_redis, redis_prefix: str, tmp_path: Path
) -> None:
    histories = UserHistories(
        [event("seeded", 0)], state(hung_redis.url, redis_prefix), spool=EventSpool(tmp_path)
    )
    posted = [event("shopper", 1, "purchase"), event("shopper", 2)]
    assert histories.record(posted) is True
    with frozen(hung_redis):
        assert histories.get("shopper") == posted
        assert histories.purchased("shopper") == {"it-1"}
    assert histories.known_users == ["seeded"], "the seed log's users; posted ones are not listed"
