"""A/B buckets end to end on a real redis-server: two ranker versions in the registry, a 50/50
test served by two workers, clicks attributed per variant, `threefold recs ab-report` agrees."""

from __future__ import annotations

import dataclasses
import json
import time
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from threefold.apps.cli import cli
from threefold.apps.recs.ab_report import two_proportion_test
from threefold.apps.recs.combiner import LinearCombiner
from threefold.apps.recs.config import RecsConfig
from threefold.apps.recs.ranker_store import RankerModel
from threefold.apps.recs.resources import open_resources
from threefold.apps.recs.web import create_app
from threefold.core.registry import ModelEntry
from threefold.streaming.connections import RedisSettings

pytestmark = [pytest.mark.integration, pytest.mark.slow]
USERS = [f"ab-{i:03d}" for i in range(120)] + ["u001", "u004", "u010"]  # new and seeded users
VARIANTS = "current:50,v1:50"


def publish(entry: ModelEntry, embedder, combiner: LinearCombiner) -> str:
    model = RankerModel(encoder=embedder, combiner=combiner, info={"trending_window_days": 14})
    return entry.publish(lambda folder, _version: model.save(folder))


@pytest.fixture
def registry_entry(tmp_path: Path, embedder) -> ModelEntry:
    """recs-ranker with v1 (default weights) and v2 (text only), v2 current."""
    entry = ModelEntry(tmp_path / "models" / "recs-ranker")
    publish(entry, embedder, LinearCombiner())
    text_only = {name: 0.0 for name in LinearCombiner().weights} | {"text": 1.0}
    publish(entry, embedder, LinearCombiner(weights=text_only))
    assert entry.versions() == ["v1", "v2"] and entry.current_version() == "v2"
    return entry


def ab_report(redis_url: str, redis_prefix: str) -> dict:
    env = {"REDIS_URL": redis_url, "THREEFOLD_RECS_REDIS_PREFIX": redis_prefix}
    result = CliRunner().invoke(cli, ["recs", "ab-report"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_a_fifty_fifty_test_over_two_versions_serves_counts_and_reports_per_variant(
    tmp_path: Path, redis_url: str, redis_prefix: str, registry_entry: ModelEntry
) -> None:
    settings = RecsConfig(
        model_dir=registry_entry.path,
        ab_variants=VARIANTS,
        redis_prefix=redis_prefix,
        model_check_seconds=0.2,
        rate_limit_per_minute=None,
        spool_dir=tmp_path / "spool",
    )
    workers = [open_resources(settings, RedisSettings(url=redis_url)) for _ in range(2)]
    clients = [create_app(settings, shared).test_client() for shared in workers]
    experiment = settings.experiment
    expected = {"current": Counter(), "v1": Counter()}
    served_by = {}
    try:
        for n, user in enumerate(USERS):
            lists = [
                client.get(f"/api/recommendations?user_id={user}&k=5").json for client in clients
            ]
            variant = experiment.assign(user)
            version = "v2" if variant == "current" else "v1"
            for body in lists:  # both workers agree: same variant, same ranker version
                assert (body["variant"], body["model_version"]) == (variant, version)
            assert lists[1]["cached"] is True  # the second worker found the first one's list
            assert lists[1]["items"] == lists[0]["items"]
            served_by[user] = variant
            expected[variant].update(lists=2, shown=sum(len(b["items"]) for b in lists))
            # users click 0, 1 or 2 items of the list, and one item it did not show
            shown = [item["item_id"] for item in lists[0]["items"]]
            picks = shown[: n % 3] if variant == "v1" else shown[: (n % 3) // 2]
            events = [
                {"user_id": user, "item_id": item, "event": "click", "list_id": lists[0]["list_id"]}
                for item in picks
            ]
            if n % 5 == 0:
                events.append(
                    {"user_id": user, "item_id": shown[-1], "event": "purchase",
                     "list_id": lists[1]["list_id"]}
                )  # fmt: skip
                expected[variant].update(purchase=1)
            if events:
                assert (
                    clients[n % 2].post("/api/events", json={"events": events}).status_code == 202
                )
            expected[variant].update(click=len(picks))
        assert set(served_by.values()) == {"current", "v1"}
        share = Counter(served_by.values())["v1"] / len(USERS)
        assert 0.3 < share < 0.7  # 50/50 within chance on 123 users

        # a restarted worker puts every user in the same variant
        workers.append(open_resources(settings, RedisSettings(url=redis_url)))
        restarted = create_app(settings, workers[-1])
        for user in USERS[:30]:
            body = restarted.test_client().get(f"/api/recommendations?user_id={user}&k=5").json
            assert body["variant"] == served_by[user]
            expected[served_by[user]].update(lists=1, shown=len(body["items"]))

        # ab-report reads every worker's counts from Redis
        report = ab_report(redis_url, redis_prefix)
        for variant, version in (("current", "v2"), ("v1", "v1")):
            row = report["variants"][variant]
            counts = {
                name: expected[variant][name] for name in ("lists", "shown", "click", "purchase")
            }
            assert {name: row[name] for name in counts} == counts
            assert row["versions"][version]["lists"] == counts["lists"]
            assert row["ctr"] == pytest.approx(counts["click"] / counts["shown"])
        control, pinned = expected["current"], expected["v1"]
        assert report["variants"]["v1"]["vs_control"] == pytest.approx(
            two_proportion_test(
                control["click"], control["shown"], pinned["click"], pinned["shown"]
            )
        )
        assert report["variants"]["v1"]["vs_control"]["diff"] > 0  # v1's users clicked more

        # /metrics: counters per variant and version, summed over the workers
        def metric(name: str, variant: str, version: str) -> float:
            line = f'{name}{{variant="{variant}",version="{version}"}} '
            total = 0.0
            for client in clients:
                for row in client.get("/metrics").text.splitlines():
                    if row.startswith(line):
                        total += float(row.split()[-1])
            return total

        worker_lists = pinned["lists"] - sum(1 for u in USERS[:30] if served_by[u] == "v1")
        assert metric("recs_ab_impressions_total", "v1", "v1") == worker_lists
        assert metric("recs_ab_clicks_total", "v1", "v1") == pinned["click"]
        assert metric("recs_ab_clicks_total", "current", "v2") == control["click"]

        # the admin view: variants, buckets, versions, a user's variant
        view = clients[0].get("/api/ab?user_id=ab-000").json
        assert [(v["variant"], v["weight"], v["model_version"]) for v in view["variants"]] == [
            ("v1", 50, "v1"), ("current", 50, "v2")
        ]  # fmt: skip
        assert view["user"]["variant"] == served_by["ab-000"]
        assert view["report"]["variants"]["v1"]["click"] == pinned["click"]

        # new weights: nobody gets a cached list of another variant or version
        everyone_v1 = dataclasses.replace(settings, ab_variants="current:0,v1:100")
        workers.append(open_resources(everyone_v1, RedisSettings(url=redis_url)))
        moved = create_app(everyone_v1, workers[-1]).test_client()
        user = next(u for u in USERS if served_by[u] == "current")
        body = moved.get(f"/api/recommendations?user_id={user}&k=5").json
        assert (body["variant"], body["model_version"], body["cached"]) == ("v1", "v1", False)

        # the control follows the registry pointer; the pinned variant stays on its version
        registry_entry.promote("v1")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            body = clients[0].get(f"/api/recommendations?user_id={user}&k=5").json
            if body["model_version"] == "v1":
                break
            time.sleep(0.2)
        assert (body["variant"], body["model_version"]) == ("current", "v1")
    finally:
        for shared in workers:
            shared.live.stop()
