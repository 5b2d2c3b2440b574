"""A pinned A/B version saved into the registry after the workers started (restored from a backup,
published late) is served by the running workers, no restart: its variant stops falling back."""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import pytest

from threefold.apps.recs.combiner import LinearCombiner
from threefold.apps.recs.config import RecsConfig
from threefold.apps.recs.ranker_store import RankerModel
from threefold.apps.recs.resources import open_resources
from threefold.apps.recs.web import create_app
from threefold.core.registry import ModelEntry
from threefold.streaming.connections import RedisSettings

WAIT_S = 120  # a bound for the watcher thread, never a timing assertion


def _fallback_gauge(client, variant: str) -> float:
    line = f'recs_ab_variant_fallback{{variant="{variant}"}} '
    [row] = [r for r in client.get("/metrics").text.splitlines() if r.startswith(line)]
    return float(row.split()[-1])


@pytest.mark.integration
@pytest.mark.slow
def test_a_pinned_version_restored_after_the_start_is_served_without_a_restart(
    tmp_path: Path, redis_url: str, redis_prefix: str, embedder, caplog: pytest.LogCaptureFixture
) -> None:
    model = RankerModel(
        encoder=embedder, combiner=LinearCombiner(), info={"trending_window_days": 14}
    )
    entry = ModelEntry(tmp_path / "models" / "recs-ranker")
    entry.publish(lambda folder, _version: model.save(folder))  # v1, current
    backup = tmp_path / "backup" / "v2"
    model.save(backup)
    settings = RecsConfig(
        model_dir=entry.path,
        ab_variants="current:50,v2:50",
        redis_prefix=redis_prefix,
        rate_limit_per_minute=None,
        spool_dir=tmp_path / "spool",
        model_check_seconds=0.2,
    )
    shared = open_resources(settings, RedisSettings(url=redis_url))
    try:
        client = create_app(settings, shared).test_client()
        users = (f"late-{n}" for n in range(200))
        user = next(u for u in users if settings.experiment.assign(u) == "v2")
        url = f"/api/recommendations?user_id={user}&k=5"
        first = client.get(url).json
        assert (first["variant"], first["model_version"]) == ("v2:fallback", "v1")
        assert _fallback_gauge(client, "v2") == 1

        # an operator restores the version's folder from a backup (a plain copy, not atomic)
        with caplog.at_level(logging.INFO, logger="threefold.apps.recs.resources"):
            shutil.copytree(backup, entry.version_dir("v2"))
            deadline = time.monotonic() + WAIT_S
            while (body := client.get(url).json)["variant"] != "v2" and time.monotonic() < deadline:
                time.sleep(0.1)
        assert (body["variant"], body["model_version"]) == ("v2", "v2"), "served without restart"
        assert _fallback_gauge(client, "v2") == 0
        assert client.get("/api/ab").json["fallbacks"] == {}
        [restored] = [
            r.fields
            for r in caplog.records
            if getattr(r, "fields", {}).get("event") == "ab_variant_restored"
        ]
        assert restored["variant"] == "v2" and restored["version"] == "v2"
        assert restored["previous_label"] == "v2:fallback"
        # it counts the events posted meanwhile and the catalog the control serves
        pinned = shared.pinned["v2"]
        assert len(pinned.events()) == len(shared.recommender.events())
        assert pinned.item_count == shared.recommender.item_count
    finally:
        shared.stop_watching()
