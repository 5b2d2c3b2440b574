"""The cap on conversations waiting for a person per client address (store and API)."""

from __future__ import annotations

import pytest
from support.concurrency import at_once

from threefold.apps.qa import handoff_queue as hq
from threefold.apps.qa.handoff_queue import MemoryHandoffStore, TooManyWaiting, new_conversation
from threefold.apps.qa.redis_handoff import RedisHandoffStore

pytestmark = pytest.mark.integration
NAT = "203.0.113.7"
OTHER = "198.51.100.9"
ALICE = {"Authorization": "Bearer tok-alice-1"}
ASK_FOR_A_PERSON = "Can I talk to a real person please?"


def waiting(n: int, client: str | None = NAT, now: float = 1000.0) -> hq.Conversation:
    return new_conversation(
        f"{n:032x}", reason="requested", page_url=None, candidates=[], now=now + n, client=client
    )


@pytest.fixture(params=["memory", "redis"])
def store(request, redis_client, redis_prefix):
    if request.param == "memory":
        return MemoryHandoffStore()
    return RedisHandoffStore(redis_client, prefix=redis_prefix, ttl_s=3600)


def test_an_address_opens_at_most_max_waiting_and_claimed_or_ended_ones_free_places(store) -> None:
    for n in range(3):
        store.open(waiting(n), max_waiting=3)
    with pytest.raises(TooManyWaiting) as refused:
        store.open(waiting(3), max_waiting=3)
    assert (refused.value.waiting, refused.value.limit) == (3, 3)
    assert [c.session_id for c in store.list("waiting")] == [f"{n:032x}" for n in range(3)]

    assert store.open(waiting(0, now=5000.0), max_waiting=3).waiting_since == 1000.0  # its own
    store.open(waiting(10, client=OTHER), max_waiting=3)  # another address has its own places
    store.open(waiting(11, client=None), max_waiting=3)  # no address known: not capped

    store.update(f"{0:032x}", lambda c: hq.claim(c, "alice", 2000.0))
    store.open(waiting(4), max_waiting=3)
    with pytest.raises(TooManyWaiting):
        store.open(waiting(5), max_waiting=3)
    store.update(f"{0:032x}", lambda c: hq.end(c, "alice", "closed", 2100.0))
    with pytest.raises(TooManyWaiting):  # the claimed one had left the count already
        store.open(waiting(5), max_waiting=3)
    store.update(f"{1:032x}", lambda c: hq.claim(c, "alice", 2200.0))
    store.update(f"{1:032x}", lambda c: hq.end(c, "alice", "released", 2300.0))
    store.open(waiting(5), max_waiting=3)


def test_opening_for_one_address_at_once_never_passes_the_cap(store) -> None:
    def open_one(n: int) -> bool:
        try:
            store.open(waiting(n), max_waiting=5)
        except TooManyWaiting:
            return False
        return True

    opened = at_once([lambda n=n: open_one(n) for n in range(16)])
    assert sum(opened) == 5
    assert len(store.list("waiting")) == 5


def test_waiting_entries_older_than_the_ttl_count_no_more(redis_client, redis_prefix) -> None:
    store = RedisHandoffStore(redis_client, prefix=redis_prefix, ttl_s=100)
    store.open(waiting(0, now=1000.0), max_waiting=1)
    with pytest.raises(TooManyWaiting):
        store.open(waiting(1, now=1050.0), max_waiting=1)
    store.open(waiting(1, now=1101.0), max_waiting=1)  # the first one has expired by then
    assert redis_client.zrange(store.waiting_key(NAT), 0, -1) == [f"{1:032x}".encode()]


@pytest.fixture(params=["redis", "memory"])
def make_capped_app(request, make_app):
    def make(**overrides: object):
        if request.param == "memory":
            overrides["redis_url"] = None
        return make_app(agent_tokens="alice:tok-alice-1", **overrides)

    return make


def ask_for_a_person(client, address: str = NAT):
    return client.post(
        "/api/chat", json={"message": ASK_FOR_A_PERSON}, environ_base={"REMOTE_ADDR": address}
    )


def test_a_flood_of_handoffs_from_one_address_stops_at_the_cap(make_capped_app) -> None:
    client = make_capped_app(max_waiting_per_client=2).test_client()
    opened = [ask_for_a_person(client) for _ in range(2)]
    assert [r.get_json()["handoff"] for r in opened] == [True, True]

    refused = ask_for_a_person(client)
    assert refused.status_code == 429, refused.get_json()
    body = refused.get_json()
    assert body["error"] == "too_many_waiting" and body["limit"] == 2
    assert "already has 2 requests" in body["message"] and "please wait" in body["message"]
    assert refused.headers["Retry-After"] == str(body["retry_after"])
    queue = client.get("/api/agent/conversations?status=waiting", headers=ALICE).get_json()
    assert sorted(c["session_id"] for c in queue) == sorted(
        r.get_json()["session_id"] for r in opened
    )
    assert (
        "client"
        not in client.get(
            f"/api/agent/conversations/{queue[0]['session_id']}", headers=ALICE
        ).get_json()
    )
    assert "qa_handoffs_refused_total 1.0" in client.get("/metrics").get_data(as_text=True)

    assert ask_for_a_person(client, OTHER).get_json()["handoff"] is True  # another address
    sid = queue[0]["session_id"]
    claimed = client.post(f"/api/agent/conversations/{sid}/claim", headers=ALICE)
    assert claimed.status_code == 200
    assert ask_for_a_person(client).get_json()["handoff"] is True  # a place came free


def test_a_customer_already_waiting_still_writes_to_the_team_at_the_cap(make_capped_app) -> None:
    client = make_capped_app(max_waiting_per_client=1).test_client()
    sid = ask_for_a_person(client).get_json()["session_id"]
    again = client.post(
        "/api/chat",
        json={"message": ASK_FOR_A_PERSON, "session_id": sid},
        environ_base={"REMOTE_ADDR": NAT},
    )
    assert again.status_code == 200 and again.get_json()["outcome"] == "agent"


def test_max_waiting_per_client_0_turns_the_cap_off(make_capped_app) -> None:
    client = make_capped_app(max_waiting_per_client=0).test_client()
    assert all(ask_for_a_person(client).status_code == 200 for _ in range(3))
