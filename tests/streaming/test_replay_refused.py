"""`threefold stream replay` with records Kafka cannot take: a record over the producer's
max_request_size is skipped and reported by line (the summary counts and names it, a warning
says it); the replay goes on with the rest. A broker lost mid-replay ends it with an error
that says how far it got and the line to resume from, not a traceback."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from click.testing import CliRunner

from threefold.core.errors import ServiceError
from threefold.streaming import replay
from threefold.streaming.cli import stream
from threefold.streaming.replay import replay_file
from threefold.streaming.services import start_kafka

pytestmark = pytest.mark.integration
BIG_TEXT_CHARS = 1_100_000  # over kafka-python's max_request_size of 1 MiB


def jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def test_a_record_too_large_is_skipped_and_named_by_line_and_the_rest_is_sent(
    tmp_path: Path, kafka_bootstrap, unique_name, read_topic, caplog
) -> None:
    records = [{"i": i} for i in range(5)] + [{"i": 5, "text": "x" * BIG_TEXT_CHARS}]
    path = jsonl(tmp_path / "news.jsonl", records + [{"i": i} for i in range(6, 11)])
    topic = unique_name("news")
    caplog.set_level(logging.WARNING, logger=replay.__name__)
    args = ["replay", str(path), "--topic", topic, "--bootstrap", kafka_bootstrap]
    result = CliRunner().invoke(stream, [*args, "--no-progress"])

    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["sent"], summary["refused"]) == (10, 1)
    (refused,) = summary["refused_records"]
    assert refused["line"] == 6
    assert "max_request_size" in refused["reason"] and "1048576" in refused["reason"]
    (warning,) = [r.getMessage() for r in caplog.records if r.name == replay.__name__]
    assert "line 6 not sent" in warning and "max_request_size" in warning
    received = sorted(json.loads(r.value)["i"] for r in read_topic(topic, min_count=10))
    assert received == [0, 1, 2, 3, 4, 6, 7, 8, 9, 10]


def test_a_broker_lost_mid_replay_ends_it_with_the_line_to_resume_from(
    tmp_path: Path, monkeypatch
) -> None:
    """Lines 1-2 are acknowledged (a flush every 2 records), then the broker goes away."""
    monkeypatch.setattr(replay, "FLUSH_EVERY", 2)
    broker = start_kafka()
    path = jsonl(tmp_path / "news.jsonl", [{"i": i} for i in range(6)])
    sent_before_sleep = []

    def sleep(_seconds: float) -> None:  # called before each send after the first
        sent_before_sleep.append(None)
        if len(sent_before_sleep) == 2:  # before line 3
            broker.stop()

    try:
        with pytest.raises(ServiceError) as raised:
            replay_file(
                path,
                topic="news",
                kafka=broker.bootstrap_servers,
                rate=1000,
                progress=False,
                sleep=sleep,
                clock=lambda: 0.0,
                producer_overrides={"request_timeout_ms": 1000, "delivery_timeout_ms": 2000},
            )
    finally:
        broker.stop()
    message = str(raised.value)
    assert "2 record(s) (lines 1-2) acknowledged" in message
    assert "resume from line 3" in message


@pytest.mark.parametrize(
    ("name", "where"),
    [
        ("news.json", "resume from item 3 ("),  # a JSON array: records are numbered by item
        ("news.csv", "resume from line 3 (keep the header line)"),
        ("news.jsonl", "resume from line 3 ("),
    ],
)
def test_where_to_resume_is_said_in_the_files_own_terms(name: str, where: str) -> None:
    progress = replay._Progress(name, "news")
    progress.acknowledged, progress.through_line = 2, 2
    assert where in str(progress.stopped(ServiceError("the broker went away")))
