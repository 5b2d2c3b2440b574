"""TopicProbe against the real broker: end offsets, and ids found past them."""

from __future__ import annotations

import pytest

from threefold.streaming.kafka_config import ensure_topics
from threefold.streaming.producer import JsonProducer
from threefold.streaming.topic_probe import TopicProbe

pytestmark = pytest.mark.integration


def test_a_topic_that_does_not_exist_has_no_offsets_and_no_ids(kafka_bootstrap, unique_name):
    probe = TopicProbe(kafka_bootstrap, unique_name("absent"), timeout_s=5)
    try:
        assert probe.end_offsets() == {}
        assert probe.ids_since({}, {"a"}, id_field="id") == set()
    finally:
        probe.close()


def test_finds_only_the_wanted_ids_written_past_the_noted_offsets(kafka_bootstrap, unique_name):
    topic = unique_name("probed")
    ensure_topics(kafka_bootstrap, [topic], partitions=2)
    probe = TopicProbe(kafka_bootstrap, topic, timeout_s=10)
    with JsonProducer(kafka_bootstrap) as producer:
        producer.send(topic, {"id": "old"}, key="k1")
        producer.flush()
        noted = probe.end_offsets()
        assert sorted(noted) == [0, 1] and sum(noted.values()) == 1
        for record_id, key in (("new", "k1"), ("other", "k2"), ("unwanted", "k3")):
            producer.send(topic, {"id": record_id}, key=key)
        producer.send_bytes(topic, b"\xff not json", key=b"k1")  # another writer's record
        producer.send_bytes(topic, b"[" * 200_000, key=b"k2")  # nested past any parser's stack
        producer.send(topic, {"id": 7}, key="k2")  # not a string id
        producer.flush()
    with JsonProducer(kafka_bootstrap, compression_type="gzip") as compressed:
        compressed.send(topic, {"id": "zipped"}, key="k3")
        compressed.flush()
    try:
        wanted = {"old", "new", "other", "zipped", "never-sent"}
        assert probe.ids_since(noted, wanted, id_field="id") == {"new", "other", "zipped"}
        # A partition missing from the note (created after it) is read from its start.
        assert probe.ids_since({}, wanted, id_field="id") == {"old", "new", "other", "zipped"}
        assert probe.ids_since(probe.end_offsets(), wanted, id_field="id") == set()
        # Noted offsets past the end (a broker that forgot the topic): nothing is there.
        assert probe.ids_since({0: 10_000, 1: 10_000}, wanted, id_field="id") == set()
    finally:
        probe.close()


def test_a_broker_that_does_not_create_topics_answers_no_offsets(kafka_bootstrap) -> None:
    """kafka-python answers None, not an empty set, for a topic an Apache Kafka broker with
    auto.create.topics.enable=false does not know (tansu creates it, so a stand-in here)."""

    class UnknownTopic:
        def partitions_for_topic(self, topic: str) -> None:
            return None

    probe = TopicProbe(kafka_bootstrap, "never-created", timeout_s=5)
    probe._consumer = UnknownTopic()
    assert probe.end_offsets() == {}
    assert probe.ids_since({}, {"a"}, id_field="id") == set()
