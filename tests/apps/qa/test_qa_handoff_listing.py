"""Listing the agents' queue: per-status reads (however many conversations ended), pages of
ended conversations, conversations of the previous version, and customers who have gone."""

from __future__ import annotations

import json
import time

import pytest

from threefold.apps.qa import handoff_queue as hq
from threefold.apps.qa.agent_desk import AgentDesk
from threefold.apps.qa.handoff_events import MemoryEventBus
from threefold.apps.qa.handoff_queue import MemoryHandoffStore, new_conversation
from threefold.apps.qa.redis_handoff import RedisHandoffStore
from threefold.apps.qa.redis_sessions import RedisSessionStore

pytestmark = pytest.mark.integration
DAY = 86_400
ALICE = {"Authorization": "Bearer tok-alice-1"}


def sid(n: int) -> str:
    return f"{n:032x}"


def waiting(n: int, now: float) -> hq.Conversation:
    return new_conversation(sid(n), reason="requested", page_url=None, candidates=[], now=now)


def hand_off_and_end(store: hq.HandoffStore, n: int, now: float, how: str = "closed") -> None:
    store.open(waiting(n, now))
    store.update(sid(n), lambda c: hq.claim(c, "alice", now + 1))
    store.update(sid(n), lambda c: hq.end(c, "alice", how, now + 2))


def keys_read(client) -> int:
    """Keys Redis has looked up so far (an MGET of n keys counts n)."""
    stats = client.info("stats")
    return stats["keyspace_hits"] + stats["keyspace_misses"]


def test_listing_the_queue_reads_as_many_keys_after_hundreds_ended_as_before(
    redis_client, redis_prefix
) -> None:
    """The console lists waiting and claimed conversations on every queue event: what that
    reads must not grow with the conversations the desk ended in the last days."""
    store = RedisHandoffStore(redis_client, prefix=redis_prefix)
    now = time.time()
    for n in range(3):
        store.open(waiting(n, now + n))
    store.update(sid(0), lambda c: hq.claim(c, "alice", now + 5))

    def listing_reads() -> int:
        before = keys_read(redis_client)
        assert [c.session_id for c in store.list("waiting")] == [sid(1), sid(2)]
        assert [c.session_id for c in store.list("claimed")] == [sid(0)]
        return keys_read(redis_client) - before

    listing_reads()  # files the conversations of a store it had not listed yet
    with_none_ended = listing_reads()
    for n in range(100, 300):  # handed off over the last days, all ended
        hand_off_and_end(store, n, now - 3 * DAY + n * 60, "closed" if n % 2 else "released")
    assert listing_reads() == with_none_ended
    assert with_none_ended < 20


@pytest.fixture(params=["memory", "redis"])
def store(request, redis_client, redis_prefix):
    if request.param == "memory":
        return MemoryHandoffStore()
    return RedisHandoffStore(redis_client, prefix=redis_prefix)


def test_ended_conversations_are_listed_a_page_at_a_time(store) -> None:
    now = time.time() - DAY
    for n in range(5):
        hand_off_and_end(store, n, now + n)
    store.open(waiting(9, now + 9))
    pages = [[c.session_id for c in store.list("closed", limit=2, offset=o)] for o in (0, 2, 4, 6)]
    assert pages == [[sid(0), sid(1)], [sid(2), sid(3)], [sid(4)], []]
    assert [c.session_id for c in store.list("closed", offset=3)] == [sid(3), sid(4)]
    assert [c.session_id for c in store.list("waiting", limit=5)] == [sid(9)]


def _write_as_the_previous_version(client, prefix: str, conversation: hq.Conversation) -> None:
    """What the previous version's `RedisHandoffStore` wrote: the conversation and the index."""
    key = f"{prefix}handoff:{conversation.session_id}"
    client.set(key, json.dumps(conversation.to_json()), ex=7 * DAY)
    client.zadd(f"{prefix}handoff:index", {conversation.session_id: conversation.waiting_since})


def _listed_by_the_previous_version(client, prefix: str, status: str) -> list[str]:
    """The previous version's listing: every conversation of the index, read and filtered."""
    ids = [i.decode() for i in client.zrange(f"{prefix}handoff:index", 0, -1)]
    raws = client.mget([f"{prefix}handoff:{i}" for i in ids]) if ids else []
    found = [json.loads(raw) for raw in raws if raw is not None]
    return [c["session_id"] for c in found if c["status"] == status]


def test_conversations_of_the_previous_version_are_listed_during_and_after_the_update(
    redis_client, redis_prefix
) -> None:
    """A store written by the previous version lists as before, and while both versions run
    side by side each lists what the other opened and changed."""
    now = time.time()
    old = waiting(0, now - DAY)
    stored_before = [
        old,
        hq.claim(waiting(1, now - DAY + 1), "bob", now - 100),
        hq.end(hq.claim(waiting(2, now - 2 * DAY), "bob", now), "bob", "closed", now),
    ]
    for conversation in stored_before:
        _write_as_the_previous_version(redis_client, redis_prefix, conversation)
    store = RedisHandoffStore(redis_client, prefix=redis_prefix)
    assert [c.session_id for c in store.list("waiting")] == [sid(0)]
    assert [c.session_id for c in store.list("claimed")] == [sid(1)]
    assert [c.session_id for c in store.list("closed")] == [sid(2)]

    store.open(waiting(3, now))  # a new worker opens; an old one opens and claims
    _write_as_the_previous_version(redis_client, redis_prefix, waiting(4, now + 1))
    _write_as_the_previous_version(redis_client, redis_prefix, hq.claim(old, "carol", now + 2))
    assert [c.session_id for c in store.list("waiting")] == [sid(3), sid(4)]
    assert [c.session_id for c in store.list("claimed")] == [sid(0), sid(1)]
    store.update(sid(4), lambda c: hq.claim(c, "alice", now + 3))
    assert [c.session_id for c in store.list("waiting")] == [sid(3)]
    assert _listed_by_the_previous_version(redis_client, redis_prefix, "waiting") == [sid(3)]
    assert _listed_by_the_previous_version(redis_client, redis_prefix, "claimed") == [
        sid(0),
        sid(1),
        sid(4),
    ]


@pytest.fixture
def desk(redis_client, redis_prefix) -> AgentDesk:
    return AgentDesk(
        store=RedisHandoffStore(redis_client, prefix=redis_prefix),
        bus=MemoryEventBus(),
        sessions=RedisSessionStore(redis_client, prefix=redis_prefix, ttl_s=1800),
        wait_timeout_s=60,
    )


def test_list_items_and_the_queue_length_tell_customers_who_have_gone(desk, redis_client) -> None:
    """A waiting customer whose session expired is flagged in the list and not counted as
    waiting for a person (the agents cannot reach them any more)."""
    here, gone = desk.sessions.create(), desk.sessions.create()
    for session in (here, gone):
        desk.hand_off(session, reason="requested", candidates=[], page_url=None)
    redis_client.delete(desk.sessions.key(gone.id))  # its session expired
    listed = [desk.summary(c) for c in desk.conversations("waiting")]
    flags = {item["session_id"]: item["session_expired"] for item in listed}
    assert flags == {here.id: False, gone.id: True}
    assert desk.waiting_customers() == 1


@pytest.fixture
def memory_app_client(make_app):
    return make_app(redis_url=None, agent_tokens="alice:tok-alice-1").test_client()


@pytest.mark.parametrize(
    "query",
    ["status=closed&limit=0", "status=closed&limit=1001", "limit=two", "offset=-1", "offset=1e3"],
)
def test_a_bad_page_is_a_400_naming_the_parameter(memory_app_client, query: str) -> None:
    response = memory_app_client.get(f"/api/agent/conversations?{query}", headers=ALICE)
    assert response.status_code == 400
    body = response.get_json()
    assert body["field"] in query and "whole number" in body["message"]
