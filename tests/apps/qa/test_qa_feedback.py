"""Feedback records in the in-memory log, exported as CSV."""

from __future__ import annotations

import csv
import io

from threefold.apps.qa.feedback import FeedbackStore, MemoryRecordLog


def test_memory_log_keeps_the_newest_and_exports_safe_csv() -> None:
    store = FeedbackStore(MemoryRecordLog(max_entries=2))
    for turn, rating in enumerate(("up", "down", "up")):
        store.record_feedback(
            session_id="s",
            turn_id=f"t{turn}",
            rating=rating,
            faq_id=None,
            question="=1+1",
            answer="a",
        )
    assert [r["rating"] for r in store.feedback()] == ["down", "up"]
    buffer = io.StringIO()
    assert store.export_feedback_csv(buffer) == 2
    rows = list(csv.DictReader(io.StringIO(buffer.getvalue())))
    assert rows[0]["question"] == "'=1+1"


def test_a_second_vote_on_one_answer_replaces_the_first() -> None:
    store = FeedbackStore(MemoryRecordLog())
    for turn, rating in (("t1", "up"), ("t2", "up"), ("t1", "down")):
        store.record_feedback(
            session_id="s", turn_id=turn, rating=rating, faq_id="f", question="q", answer="a"
        )
    assert [(r["turn_id"], r["rating"]) for r in store.feedback()] == [("t2", "up"), ("t1", "down")]
    buffer = io.StringIO()
    assert store.export_feedback_csv(buffer) == 2


def test_records_put_back_go_ahead_of_newer_ones_and_a_full_log_keeps_the_newest() -> None:
    log = MemoryRecordLog(max_entries=3)
    for n in (1, 2, 3):
        log.append("feedback", {"n": n})
    log.append("unanswered", {"n": 10})
    drained = log.drain()
    log.append("feedback", {"n": 4})
    log.put_back(drained[1:])  # record 1 was written before a failure
    assert [r["n"] for r in log.read("feedback")] == [2, 3, 4]
    assert [r["n"] for r in log.read("unanswered")] == [10]
    log.put_back([("feedback", {"n": 0})])  # full: the oldest goes
    assert [r["n"] for r in log.read("feedback")] == [2, 3, 4]
