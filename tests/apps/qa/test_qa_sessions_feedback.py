"""Session state and feedback logs in the real embedded Redis."""

from __future__ import annotations

import csv
import io
import time

import pytest
from click.testing import CliRunner

from threefold.apps.qa.cli import qa
from threefold.apps.qa.feedback import FeedbackStore
from threefold.apps.qa.sessions import SessionStore, Turn

pytestmark = pytest.mark.integration


def test_session_round_trip_with_ttl_and_turn_cap(redis_client, redis_prefix: str) -> None:
    store = SessionStore(redis_client, prefix=redis_prefix, ttl_s=300, max_turns=4)
    session = store.create()
    for i in range(6):
        session.turns.append(Turn(turn_id=f"t{i}", role="user", text=f"message {i}", ts=float(i)))
    session.failures = 1
    store.save(session)
    again = store.get(session.id)
    assert again is not None
    assert [t.text for t in again.turns] == ["message 2", "message 3", "message 4", "message 5"]
    assert again.failures == 1
    assert 0 < redis_client.ttl(store.key(session.id)) <= 300
    assert store.get("0" * 32) is None
    assert store.get("not-an-id") is None


def test_expired_session_is_gone(redis_client, redis_prefix: str) -> None:
    store = SessionStore(redis_client, prefix=redis_prefix, ttl_s=1)
    session = store.create()
    deadline = time.monotonic() + 10
    while store.get(session.id) is not None:
        assert time.monotonic() < deadline, "the session never expired"
        time.sleep(0.2)


def test_feedback_export_command_writes_csv(
    redis_client, redis_url: str, redis_prefix: str
) -> None:
    store = FeedbackStore(redis_client, prefix=redis_prefix)
    store.record_feedback(
        session_id="s", turn_id="t", rating="down", faq_id="x", question="q?", answer="a"
    )
    store.log_unanswered(
        session_id="s",
        question="huh?",
        reason="low_confidence",
        confidence=0.1,
        candidates=["a", "b"],
    )
    runner = CliRunner()
    args = ["export", "--redis-url", redis_url, "--prefix", redis_prefix]
    feedback = runner.invoke(qa, [*args, "--what", "feedback"])
    assert feedback.exit_code == 0, feedback.output
    rows = list(csv.DictReader(io.StringIO(feedback.stdout)))
    assert [(r["rating"], r["faq_id"], r["question"]) for r in rows] == [("down", "x", "q?")]
    unanswered = runner.invoke(qa, [*args, "--what", "unanswered"])
    rows = list(csv.DictReader(io.StringIO(unanswered.stdout)))
    assert rows[0]["candidates"] == "a|b" and rows[0]["question"] == "huh?"
