"""The waiting cap counts the customers who may still be there: a waiting conversation stops
counting against its address's cap once its customer's session has run out (`session_ttl_s`
after the handoff), yet stays in the agents' queue."""

from __future__ import annotations

import pytest

from threefold.apps.qa import handoff_queue as hq
from threefold.apps.qa.handoff_queue import MemoryHandoffStore, TooManyWaiting, new_conversation
from threefold.apps.qa.redis_handoff import RedisHandoffStore
from threefold.apps.qa.resources import EXTENSION_KEY

pytestmark = pytest.mark.integration
NAT = "203.0.113.7"
SESSION_TTL_S = 1800  # QAConfig's default: how long a customer's session outlives their message
ALICE = {"Authorization": "Bearer tok-alice-1"}
ASK_FOR_A_PERSON = "Can I talk to a real person please?"


def handoff(n: int, at: float) -> hq.Conversation:
    return new_conversation(
        f"{n:032x}", reason="requested", page_url=None, candidates=[], now=at, client=NAT
    )


@pytest.fixture(params=["memory", "redis"])
def store(request, redis_client, redis_prefix):
    """A store as the service builds it (default settings)."""
    if request.param == "memory":
        return MemoryHandoffStore()
    return RedisHandoffStore(redis_client, prefix=redis_prefix)


def test_twenty_abandoned_handoffs_no_longer_block_the_next_customer(store) -> None:
    for n in range(20):
        store.open(handoff(n, at=1000.0 + n), max_waiting=20)
    with pytest.raises(TooManyWaiting) as refused:  # all 20 may still be there: the cap holds
        store.open(handoff(20, at=1000.0 + SESSION_TTL_S - 1), max_waiting=20)
    assert refused.value.waiting == 20

    later = 1019.0 + SESSION_TTL_S  # the sessions of all 20 have run out
    assert store.open(handoff(20, at=later), max_waiting=20).status == "waiting"
    waiting = [c.session_id for c in store.list("waiting")]
    assert waiting == [f"{n:032x}" for n in range(21)]  # the abandoned ones are still queued

    store.update(f"{0:032x}", lambda c: hq.claim(c, "alice", later))  # and agents can take them
    store.update(f"{0:032x}", lambda c: hq.end(c, "alice", "closed", later))
    assert store.get(f"{0:032x}").status == "closed"


def test_only_the_conversations_whose_customer_may_still_be_there_count(store) -> None:
    for n in range(15):
        store.open(handoff(n, at=1000.0), max_waiting=20)
    now = 1000.0 + SESSION_TTL_S  # those 15 are past it
    for n in range(15, 35):
        store.open(handoff(n, at=now), max_waiting=20)
    with pytest.raises(TooManyWaiting) as refused:  # 20 live ones block the next one
        store.open(handoff(35, at=now + 1), max_waiting=20)
    assert (refused.value.waiting, refused.value.limit) == (20, 20)
    assert len(store.list("waiting")) == 35


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_the_counted_time_follows_the_session_ttl(kind, redis_client, redis_prefix) -> None:
    if kind == "memory":
        store = MemoryHandoffStore(counts_for_s=60)
    else:
        store = RedisHandoffStore(redis_client, prefix=redis_prefix, counts_for_s=60)
    store.open(handoff(0, at=1000.0), max_waiting=1)
    with pytest.raises(TooManyWaiting):
        store.open(handoff(1, at=1059.0), max_waiting=1)
    store.open(handoff(1, at=1060.0), max_waiting=1)


def test_a_waiting_set_written_before_the_rule_is_read_under_it(redis_client, redis_prefix) -> None:
    """The previous version kept every waiting conversation of the address in the set, scored
    by its handoff time, for 7 days: those live still count, the others no more."""
    store = RedisHandoffStore(redis_client, prefix=redis_prefix)
    key = store.waiting_key(NAT)
    redis_client.zadd(key, {f"{n:032x}": 1000.0 + n for n in range(20)})
    redis_client.expire(key, 7 * 24 * 3600)

    with pytest.raises(TooManyWaiting):
        store.open(handoff(20, at=2000.0), max_waiting=20)
    store.open(handoff(20, at=1019.0 + SESSION_TTL_S), max_waiting=20)
    assert redis_client.zrange(key, 0, -1) == [f"{20:032x}".encode()]  # the rest pruned
    assert 0 < redis_client.ttl(key) <= SESSION_TTL_S


@pytest.fixture(params=["redis", "memory"])
def capped_app(request, make_app):
    overrides: dict[str, object] = {"agent_tokens": "alice:tok-alice-1"}
    if request.param == "memory":
        overrides["redis_url"] = None
    return make_app(max_waiting_per_client=2, **overrides)


def test_customers_who_left_free_their_networks_places_for_the_next(capped_app) -> None:
    client = capped_app.test_client()
    desk = capped_app.extensions[EXTENSION_KEY].desk

    def ask_for_a_person(at: float):
        desk.clock = lambda: at
        return client.post(
            "/api/chat", json={"message": ASK_FOR_A_PERSON}, environ_base={"REMOTE_ADDR": NAT}
        )

    left = [ask_for_a_person(1000.0 + n).get_json()["session_id"] for n in range(2)]
    refused = ask_for_a_person(1000.0 + SESSION_TTL_S - 1)  # they may still be there
    assert refused.status_code == 429 and refused.get_json()["error"] == "too_many_waiting"

    later = ask_for_a_person(1001.0 + SESSION_TTL_S)  # both sessions have run out since
    assert later.status_code == 200 and later.get_json()["handoff"] is True
    queue = client.get("/api/agent/conversations?status=waiting", headers=ALICE).get_json()
    assert sorted(c["session_id"] for c in queue) == sorted([*left, later.get_json()["session_id"]])


@pytest.mark.parametrize("redis", [True, False], ids=["redis", "memory"])
def test_the_apps_session_ttl_setting_is_the_counted_time(redis, make_app) -> None:
    overrides: dict[str, object] = {} if redis else {"redis_url": None}
    app = make_app(max_waiting_per_client=1, session_ttl_s=60, **overrides)
    client, desk = app.test_client(), app.extensions[EXTENSION_KEY].desk

    def ask_for_a_person(at: float) -> int:
        desk.clock = lambda: at
        reply = client.post(
            "/api/chat", json={"message": ASK_FOR_A_PERSON}, environ_base={"REMOTE_ADDR": NAT}
        )
        return reply.status_code

    assert ask_for_a_person(1000.0) == 200
    assert ask_for_a_person(1059.0) == 429
    assert ask_for_a_person(1061.0) == 200
