"""`threefold stream replay`: files into a topic, with keys, timestamps and a rate limit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from threefold.core.errors import DataError
from threefold.streaming.cli import stream
from threefold.streaming.replay import replay_file

HEADLINES = """id,text,published_at
n1,"Acme beats estimates, raises guidance",2024-05-01T09:30:00Z
n2,Globex shares slump after recall,1714556000
n3,Initech names new CFO,1714556100000
"""


def test_replay_without_a_broker_says_how_to_give_one(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    path = tmp_path / "news.csv"
    path.write_text(HEADLINES)
    result = CliRunner().invoke(stream, ["replay", str(path), "--topic", "news"])
    assert result.exit_code == 2
    assert "pass --bootstrap HOST:PORT or set KAFKA_BOOTSTRAP_SERVERS" in result.output


def test_a_bad_timestamp_names_file_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "news.csv"
    path.write_text(HEADLINES + "n4,Hooli IPO,next tuesday\n")
    with pytest.raises(DataError, match=r"line 5, column published_at: .*ISO 8601"):
        replay_file(path, topic="t", kafka="127.0.0.1:1", timestamp_field="published_at")


@pytest.mark.integration
def test_replay_cli_sends_every_record_with_key_and_timestamp(
    tmp_path: Path, kafka_bootstrap, unique_name, read_topic
) -> None:
    path = tmp_path / "news.csv"
    path.write_text(HEADLINES)
    topic = unique_name("news")
    args = ["replay", str(path), "--topic", topic, "--bootstrap", kafka_bootstrap]
    args += ["--key-field", "id", "--timestamp-field", "published_at", "--no-progress"]
    result = CliRunner().invoke(stream, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["sent"] == 3 and summary["topic"] == topic
    # An auto-created topic has several partitions on tansu: order by key, not by arrival.
    records = sorted(read_topic(topic, min_count=3), key=lambda r: r.key)
    assert [r.key for r in records] == [b"n1", b"n2", b"n3"]
    assert [r.timestamp for r in records] == [1714555800000, 1714556000000, 1714556100000]
    assert json.loads(records[0].value) == {
        "id": "n1",
        "text": "Acme beats estimates, raises guidance",
        "published_at": "2024-05-01T09:30:00Z",
    }


@pytest.mark.integration
def test_replay_paces_messages_at_the_rate(
    tmp_path: Path, kafka_bootstrap, unique_name, read_topic
) -> None:
    path = tmp_path / "items.jsonl"
    path.write_text("".join(json.dumps({"i": i}) + "\n" for i in range(5)))
    topic = unique_name("paced")
    now = [1000.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(round(seconds, 6))
        now[0] += seconds

    summary = replay_file(
        path,
        topic=topic,
        kafka=kafka_bootstrap,
        rate=10,
        progress=False,
        sleep=sleep,
        clock=lambda: now[0],
    )
    assert summary == {
        "sent": 5,
        "refused": 0,
        "refused_records": [],
        "topic": topic,
        "seconds": 0.4,
    }
    assert sleeps == [0.1, 0.1, 0.1, 0.1]  # message i is due i/rate seconds after the start
    received = sorted(json.loads(r.value)["i"] for r in read_topic(topic, min_count=5))
    assert received == list(range(5))
