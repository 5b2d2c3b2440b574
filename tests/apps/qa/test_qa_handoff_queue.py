"""Claim rules of handed-off conversations (pure) and the store contract (memory and Redis)."""

from __future__ import annotations

import threading

import pytest

from threefold.apps.qa import handoff_queue as hq
from threefold.apps.qa.handoff_events import MemoryEventBus
from threefold.apps.qa.handoff_queue import (
    ConversationEnded,
    HeldByAnother,
    MemoryHandoffStore,
    NotClaimed,
    UnknownConversation,
    new_conversation,
)
from threefold.apps.qa.redis_handoff import RedisEventBus, RedisHandoffStore

SID = "a" * 32


def waiting(session_id: str = SID, now: float = 100.0) -> hq.Conversation:
    return new_conversation(session_id, reason="requested", page_url=None, candidates=[], now=now)


def test_claim_reply_and_end_follow_the_rules() -> None:
    claimed = hq.claim(waiting(), "alice", 110.0)
    assert (claimed.status, claimed.agent, claimed.claimed_at) == ("claimed", "alice", 110.0)
    assert hq.claim(claimed, "alice", 120.0) is claimed
    with pytest.raises(HeldByAnother) as refused:
        hq.claim(claimed, "bob", 120.0)
    assert refused.value.agent == "alice"
    with pytest.raises(NotClaimed):
        hq.record_reply(waiting(), "alice", 120.0)
    replied = hq.record_reply(claimed, "alice", 130.0)
    assert hq.record_reply(replied, "alice", 140.0).first_reply_at == 130.0
    closed = hq.end(replied, "alice", "closed", 150.0)
    assert not closed.active
    for change in (
        lambda c: hq.claim(c, "bob", 160.0),
        lambda c: hq.record_reply(c, "alice", 160.0),
        lambda c: hq.end(c, "alice", "released", 160.0),
        lambda c: hq.leave_message(c, "is anyone there?", 160.0),
    ):
        with pytest.raises(ConversationEnded, match="closed"):
            change(closed)
    with pytest.raises(ValueError, match="'closed' or 'released'"):
        hq.end(replied, "alice", "done", 150.0)


def test_conversation_round_trips_through_json() -> None:
    conversation = new_conversation(
        SID, reason="requested", page_url="https://x.test", candidates=[{"faq_id": "a"}], now=1.0
    )
    assert hq.conversation_from_dict(conversation.to_json()) == conversation


def test_a_conversation_stored_by_a_newer_version_still_reads() -> None:
    """During a rolling update (or after a rollback) a worker reads conversations written by
    another version: a field it does not know is ignored, not a 500 on every queue listing."""
    conversation = new_conversation(SID, reason="requested", page_url=None, candidates=[], now=1.0)
    stored = {**conversation.to_json(), "field_of_a_newer_version": {"x": 1}}
    assert hq.conversation_from_dict(stored) == conversation


@pytest.fixture(params=["memory", "redis"])
def store(request, redis_client, redis_prefix):
    if request.param == "memory":
        return MemoryHandoffStore()
    return RedisHandoffStore(redis_client, prefix=redis_prefix)


@pytest.mark.integration
def test_store_contract(store) -> None:
    assert store.get(SID) is None
    with pytest.raises(UnknownConversation):
        store.update(SID, lambda c: c)
    first = store.open(waiting(now=100.0))
    assert store.open(waiting(now=200.0)) == first  # one active conversation per session
    store.open(waiting("b" * 32, now=50.0))
    assert [c.session_id for c in store.list("waiting")] == ["b" * 32, SID]
    store.update(SID, lambda c: hq.claim(c, "alice", 110.0))
    assert [c.session_id for c in store.list("claimed")] == [SID]
    store.update(SID, lambda c: hq.end(c, "alice", "closed", 120.0))
    reopened = store.open(waiting(now=300.0))
    assert (reopened.status, reopened.waiting_since) == ("waiting", 300.0)


@pytest.mark.integration
def test_a_message_left_after_the_conversation_ended_is_refused_not_stored(store) -> None:
    """Nobody would read it (an ended conversation is in no agent's queue): the customer is
    told, in both stores alike, rather than a 'stored' nobody sees."""
    store.open(waiting())
    left = store.update(SID, lambda c: hq.leave_message(c, "call me", 105.0))
    assert left.left_message == "call me"
    store.update(SID, lambda c: hq.claim(c, "alice", 110.0))
    left = store.update(SID, lambda c: hq.leave_message(c, "still me", 115.0))
    assert left.left_message == "still me"
    store.update(SID, lambda c: hq.end(c, "alice", "closed", 120.0))
    with pytest.raises(ConversationEnded, match="closed"):
        store.update(SID, lambda c: hq.leave_message(c, "anyone?", 125.0))
    assert store.get(SID).left_message == "still me"


@pytest.mark.integration
def test_only_one_of_many_racing_agents_wins_the_claim(store) -> None:
    store.open(waiting())
    winners: list[str] = []
    barrier = threading.Barrier(8)

    def try_claim(agent: str) -> None:
        barrier.wait()
        try:
            store.update(SID, lambda c: hq.claim(c, agent, 110.0))
            winners.append(agent)
        except HeldByAnother:
            pass

    threads = [threading.Thread(target=try_claim, args=(f"agent{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1
    assert store.get(SID).agent == winners[0]


@pytest.fixture(params=["memory", "redis"])
def bus(request, redis_client, redis_prefix):
    if request.param == "memory":
        return MemoryEventBus()
    return RedisEventBus(redis_client, prefix=redis_prefix)


@pytest.mark.integration
def test_event_bus_delivers_to_subscribers_of_the_channel(bus) -> None:
    listener = bus.listen(["queue"], seconds=5, tick_s=0.1)
    assert next(listener) is None  # subscribed
    bus.publish("session:x", {"type": "other"})
    bus.publish("queue", {"type": "conversation", "n": 1})
    event = next(e for e in listener if e is not None)
    listener.close()
    assert event == {"type": "conversation", "n": 1}
