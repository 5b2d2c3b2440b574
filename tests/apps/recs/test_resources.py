"""Preparation once, then workers that only load: vectors and the tuned combiner from Redis."""

from __future__ import annotations

import logging

import pytest

from threefold.apps.recs.config import RecsConfig
from threefold.apps.recs.resources import open_resources, prepare_recs
from threefold.apps.recs.web import create_app
from threefold.streaming.connections import RedisSettings

pytestmark = pytest.mark.integration


def test_a_worker_opened_after_prepare_embeds_nothing_and_serves_the_tuned_combiner(
    embedder, redis_url, redis_prefix, caplog
):
    settings = RecsConfig(redis_prefix=redis_prefix)
    redis = RedisSettings(url=redis_url)
    tuned = prepare_recs(settings, redis, encoder=embedder)
    assert tuned is not None
    assert tuned.validation

    with caplog.at_level(logging.INFO, logger="threefold.apps.recs.resources"):
        resources = open_resources(settings, redis, encoder=embedder)
    assert "0 embedded by this worker" in caplog.text
    assert resources.recommender.combiner.to_dict() == tuned.combiner.to_dict()

    health = create_app(settings, resources).test_client().get("/healthz")
    assert health.status_code == 200
    assert health.json["status"] == "ok"
    assert health.json["redis"] == "up"
    assert health.json["ranker"]["validation"] == tuned.validation


def test_the_statistics_refresh_interval_reaches_the_recommender(embedder):
    settings = RecsConfig(tune_on_start=False, stats_refresh_seconds=30.0)
    resources = open_resources(settings, RedisSettings(), encoder=embedder)
    assert resources.recommender.stats_refresh_seconds == 30.0


def test_prepare_skips_tuning_when_told_not_to(embedder):
    settings = RecsConfig(tune_on_start=False)
    assert prepare_recs(settings, RedisSettings(), encoder=embedder) is None
