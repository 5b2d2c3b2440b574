"""A pinned A/B version deleted from the registry does not take the recommendation API down: the
workers start, the control serves that variant's users under `<variant>:fallback`, the log,
/metrics, /api/ab and `threefold recs ab-report` say so."""

from __future__ import annotations

import json
import logging
import shutil
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from threefold.apps.cli import cli
from threefold.apps.recs.ab_buckets import CONTROL, fallback_label, fallback_of
from threefold.apps.recs.ab_report import ab_report
from threefold.apps.recs.combiner import LinearCombiner
from threefold.apps.recs.config import RecsConfig
from threefold.apps.recs.ranker_store import RankerModel
from threefold.apps.recs.resources import check_pinned_versions, open_resources
from threefold.apps.recs.web import create_app
from threefold.core.registry import ModelEntry
from threefold.streaming.connections import RedisSettings

USERS = [f"fallback-{i:03d}" for i in range(60)]
VARIANTS = "current:40,v1:30,v3:30"  # v1 deleted, v3 a broken folder, v2 current


def test_fallback_labels_never_clash_with_a_variant_name() -> None:
    assert fallback_label("v5") == "v5:fallback"
    assert fallback_of("v5:fallback") == "v5"
    assert fallback_of("v5") is None and fallback_of(CONTROL) is None


def test_ab_report_keeps_fallback_lists_apart_and_warns_about_the_variant() -> None:
    row = {"lists": 10, "shown": 100, "click": 7, "purchase": 1}
    counts = {
        CONTROL: {"v2": row},
        "v5": {"v5": {**row, "click": 9}},  # counted before v5 went
        "v5:fallback": {"v2": {**row, "click": 3}},
    }
    reason = "version 'v5' is missing from the registry entry /models/recs-ranker"
    report = ab_report(counts, fallbacks={"v5": reason})
    control, variant, fallback = (report["variants"][n] for n in (CONTROL, "v5", "v5:fallback"))
    assert control["click"] == 7, "the control's row counts the control's users only"
    assert variant["fallback"] is True and variant["vs_control"]["diff"] == pytest.approx(0.02)
    assert fallback["fallback_for"] == "v5" and "vs_control" not in fallback
    assert fallback["versions"] == {"v2": {**row, "click": 3, "ctr": 0.03, "purchase_rate": 0.01}}
    assert report["fallbacks"] == {"v5": reason}
    [warning] = report["warnings"]
    assert warning.startswith(f"A/B variant 'v5' falls back to the control: {reason}. Its users")
    assert "counted as 'v5:fallback', not as 'v5'" in warning
    assert "THREEFOLD_RECS_AB_VARIANTS" in warning
    plain = ab_report({CONTROL: {"v2": row}, "v5": {"v5": row}})
    assert plain["fallbacks"] == {} and plain["warnings"] == []
    assert plain["variants"]["v5"]["fallback"] is False


def test_a_missing_version_nobody_is_served_is_no_fallback(broken_registry: ModelEntry) -> None:
    """Weight 0 (the variant stopped, its version pruned since): nothing to warn about."""
    settings = RecsConfig(model_dir=broken_registry.path, ab_variants="current:100,v1:0")
    assert check_pinned_versions(settings).missing == {}


def _not_a_ranker(folder: Path, _version: str) -> None:
    (folder / "ranker.json").write_text("{}")


@pytest.fixture
def broken_registry(tmp_path: Path, embedder) -> ModelEntry:
    """recs-ranker: v1 published then deleted, v2 a real ranker (current), v3 a folder without
    the model's files (a half-copied or half-deleted version)."""
    entry = ModelEntry(tmp_path / "models" / "recs-ranker")
    entry.publish(_not_a_ranker)
    model = RankerModel(
        encoder=embedder, combiner=LinearCombiner(), info={"trending_window_days": 14}
    )
    entry.publish(lambda folder, _version: model.save(folder))
    entry.publish(
        lambda folder, _version: (folder / "ranker.json").write_text("{}"), activate=False
    )
    shutil.rmtree(entry.version_dir("v1"))
    assert entry.versions() == ["v2", "v3"] and entry.current_version() == "v2"
    return entry


def _metric(text: str, line: str) -> float | None:
    rows = [row for row in text.splitlines() if row.startswith(line + " ")]
    return float(rows[0].split()[-1]) if rows else None


@pytest.mark.integration
@pytest.mark.slow
def test_workers_start_and_serve_the_control_to_variants_whose_version_is_missing(
    tmp_path: Path,
    redis_url: str,
    redis_prefix: str,
    broken_registry: ModelEntry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = RecsConfig(
        model_dir=broken_registry.path,
        ab_variants=VARIANTS,
        redis_prefix=redis_prefix,
        rate_limit_per_minute=None,
        spool_dir=tmp_path / "spool",
    )
    with caplog.at_level(logging.WARNING, logger="threefold.apps.recs.resources"):
        shared = open_resources(settings, RedisSettings(url=redis_url))
    try:
        warned = {
            r.fields["variant"]: r
            for r in caplog.records
            if r.name == "threefold.apps.recs.resources" and hasattr(r, "fields")
        }
        assert set(warned) == {"v1", "v3"}
        assert warned["v1"].levelno == logging.WARNING
        assert warned["v1"].fields["event"] == "ab_variant_fallback"
        assert warned["v1"].fields["label"] == "v1:fallback"
        assert "version 'v1' is missing from the registry entry" in warned["v1"].fields["reason"]
        assert "version 'v3' failed to load" in warned["v3"].fields["reason"]
        assert set(shared.fallbacks) == {"v1", "v3"} and shared.pinned == {}

        client = create_app(settings, shared).test_client()
        experiment = settings.experiment
        served = Counter()
        for n, user in enumerate(USERS):
            response = client.get(f"/api/recommendations?user_id={user}&k=5")
            assert response.status_code == 200, response.json
            body = response.json
            variant = experiment.assign(user)
            label = CONTROL if variant == CONTROL else fallback_label(variant)
            assert (body["variant"], body["model_version"]) == (label, "v2")
            assert body["items"]
            served[label] += 1
            if n % 2 == 0:  # a click on the list's first item, attributed by list_id
                event = {"user_id": user, "event": "click", "list_id": body["list_id"]}
                event["item_id"] = body["items"][0]["item_id"]
                assert client.post("/api/events", json={"events": [event]}).status_code == 202
        assert set(served) == {CONTROL, "v1:fallback", "v3:fallback"}

        metrics = client.get("/metrics").text
        assert _metric(metrics, 'recs_ab_variant_fallback{variant="v1"}') == 1.0
        assert _metric(metrics, 'recs_ab_variant_fallback{variant="v3"}') == 1.0
        lists = 'recs_ab_impressions_total{variant="v1:fallback",version="v2"}'
        assert _metric(metrics, lists) == served["v1:fallback"]
        assert _metric(metrics, 'recs_ab_impressions_total{variant="v1",version="v2"}') is None

        view = client.get("/api/ab").json
        assert set(view["fallbacks"]) == {"v1", "v3"}
        v1_user = next(user for user in USERS if experiment.assign(user) == "v1")
        shown = client.get(f"/api/ab?user_id={v1_user}").json["user"]
        assert shown["variant"] == "v1:fallback", "as the user's lists are labelled"
        assert {v["variant"]: v["model_version"] for v in view["variants"]} == {
            "v1": "v2", "v3": "v2", CONTROL: "v2"
        }  # fmt: skip

        env = {
            "REDIS_URL": redis_url,
            "THREEFOLD_RECS_REDIS_PREFIX": redis_prefix,
            "THREEFOLD_RECS_MODEL_DIR": str(broken_registry.path),
            "THREEFOLD_RECS_AB_VARIANTS": VARIANTS,
        }
        result = CliRunner().invoke(cli, ["recs", "ab-report"], env=env, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        assert list(report["fallbacks"]) == ["v1"], "the CLI reads the registry: v1 is gone"
        assert "version 'v1' is missing from the registry entry" in report["fallbacks"]["v1"]
        assert "A/B variant 'v1' falls back to the control" in report["warnings"][0]
        rows = report["variants"]
        assert set(rows) == {CONTROL, "v1:fallback", "v3:fallback"}
        assert rows[CONTROL]["lists"] == served[CONTROL], "fallback lists are not the control's"
        for label in ("v1:fallback", "v3:fallback"):
            assert rows[label]["lists"] == served[label]
            assert rows[label]["fallback_for"] == fallback_of(label)
            assert "vs_control" not in rows[label]
        assigned = CliRunner().invoke(
            cli, ["recs", "ab-config", "--user", v1_user], env=env, catch_exceptions=False
        )
        assert json.loads(assigned.stdout)["users"][0]["variant"] == "v1:fallback"
        clicks = sum(row["click"] for row in rows.values())
        assert clicks == len(USERS[::2]), "every click is attributed to the list's label"
    finally:
        shared.stop_watching()  # the pointer and the missing versions' folders
