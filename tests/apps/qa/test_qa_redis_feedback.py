"""Feedback logs in the real embedded Redis, exported by `threefold qa export`."""

from __future__ import annotations

import csv
import io

import pytest
from click.testing import CliRunner

from threefold.apps.qa.cli import qa
from threefold.apps.qa.feedback import FeedbackStore
from threefold.apps.qa.redis_feedback import RedisRecordLog

pytestmark = pytest.mark.integration


def test_feedback_export_command_writes_csv(
    redis_client, redis_url: str, redis_prefix: str
) -> None:
    store = FeedbackStore(RedisRecordLog(redis_client, prefix=redis_prefix))
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


def test_agent_replies_export(redis_client, redis_url: str, redis_prefix: str) -> None:
    store = FeedbackStore(RedisRecordLog(redis_client, prefix=redis_prefix))
    store.log_agent_reply(
        session_id="s", turn_id="t", agent="ana", question="=1+1 bitcoin?", reply="No crypto."
    )
    args = ["export", "--redis-url", redis_url, "--prefix", redis_prefix, "--what", "agent_replies"]
    result = CliRunner().invoke(qa, args)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [(r["agent"], r["question"], r["reply"]) for r in rows] == [
        ("ana", "'=1+1 bitcoin?", "No crypto.")
    ]
