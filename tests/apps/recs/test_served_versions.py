"""Every list names the ranker version that produced it and is logged as an impression."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from threefold.apps.cli import cli
from threefold.apps.recs.combiner import LinearCombiner
from threefold.apps.recs.config import DEFAULT_GATE_EVENTS
from threefold.apps.recs.evaluation import gate_split
from threefold.apps.recs.events import Event, load_events
from threefold.apps.recs.recommender import Ranker
from threefold.apps.recs.web.shared import EXTENSION
from threefold.core.errors import DataError
from threefold.streaming.services import free_port

RECS = "/api/recommendations?user_id=u004&k=5"


@pytest.mark.integration
def test_a_swapped_ranker_names_itself_and_skips_lists_cached_for_the_old_one(
    make_app, redis_url: str, redis_prefix: str, embedder
) -> None:
    app = make_app(redis_url, redis_prefix=redis_prefix)
    client = app.test_client()
    first = client.get(RECS).json
    again = client.get(RECS).json
    assert first["model_version"] == again["model_version"] == "base"
    assert again["cached"] is True and again["list_id"] != first["list_id"]
    text_only = LinearCombiner(weights={**LinearCombiner().weights, "popularity": 0.0})
    app.extensions[EXTENSION].recommender.swap_ranker(
        Ranker(encoder=embedder, combiner=text_only, version="v7")
    )
    swapped = client.get(RECS).json
    assert swapped["model_version"] == "v7" and swapped["cached"] is False
    assert client.get("/healthz").json["model_version"] == "v7"
    versions = client.get("/api/impressions/ctr").json["versions"]
    assert versions["base"]["lists"] == 2 and versions["v7"]["lists"] == 1


def test_without_redis_impressions_and_ctr_live_in_the_worker(make_app) -> None:
    client = make_app().test_client()
    body = client.get(RECS).json
    click = {"user_id": "u004", "item_id": body["items"][0]["item_id"], "event": "click"}
    response = client.post("/api/events", json={**click, "list_id": body["list_id"]})
    assert response.status_code == 202
    assert client.get("/api/impressions/ctr").json["versions"]["base"] == {
        "lists": 1, "shown": 5, "click": 1, "purchase": 0, "ctr": 0.2, "purchase_rate": 0.0
    }  # fmt: skip


def test_a_malformed_list_id_is_a_400_that_says_what_to_send(make_app) -> None:
    client = make_app().test_client()
    event = {"user_id": "u004", "item_id": "kt-003", "event": "click", "list_id": "no spaces!"}
    response = client.post("/api/events", json=event)
    assert response.status_code == 400
    assert response.json["field"] == "list_id"
    assert "list_id of a recommendation response" in response.json["message"]


@pytest.mark.integration
def test_redis_down_lists_still_serve_and_their_impressions_are_spooled(make_app) -> None:
    app = make_app(f"redis://127.0.0.1:{free_port()}/0", redis_retry_seconds=30.0)
    client = app.test_client()
    response = client.get(RECS)
    assert response.status_code == 200 and response.json["model_version"] == "base"
    spool = app.extensions[EXTENSION].impressions.spool.path
    assert spool.name.startswith("impressions-threefold-recs-"), "named by its Redis, prefix"
    (line,) = spool.read_text().splitlines()
    assert json.loads(line)["list_id"] == response.json["list_id"]
    readout = client.get("/api/impressions/ctr")
    assert readout.status_code == 503 and readout.headers["Retry-After"] == "5"


def test_the_gate_split_hides_only_held_out_items(catalog, sample_events) -> None:
    gate = load_events(DEFAULT_GATE_EVENTS, known_items=catalog)
    split = gate_split(catalog, sample_events, gate)
    assert len(split.users) >= 30 and all(user.startswith("g") for user in split.users)
    held_out = {(e.user_id, e.item_id) for e in gate}
    for user, target in zip(split.users, split.targets, strict=True):
        assert (user, split.items[target].item_id) in held_out
        assert not split.seen[split.users.index(user), target]
    assert not set(gate) & set(sample_events)
    with pytest.raises(DataError, match="gate event item ids are not in the catalog"):
        gate_split(catalog, sample_events, [Event("g1", "gone", "view", 1.0)])


def test_retrain_without_a_registry_says_how_to_name_one(monkeypatch) -> None:
    monkeypatch.delenv("THREEFOLD_MODELS_DIR", raising=False)
    monkeypatch.delenv("THREEFOLD_RECS_MODEL_DIR", raising=False)
    result = CliRunner().invoke(cli, ["retrain", "recs"])
    assert result.exit_code == 1
    assert "pass --registry ROOT" in result.output and "Traceback" not in result.output


def test_build_wants_exactly_one_destination(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["recs", "build"])
    assert result.exit_code == 2 and "exactly one of --out DIR and --registry ROOT" in result.output


def test_without_an_experiment_every_list_is_the_controls_and_api_ab_says_so(make_app) -> None:
    client = make_app().test_client()
    body = client.get(RECS).json
    assert body["variant"] == "current"
    view = client.get("/api/ab?user_id=u004").json
    assert view["variants"] == [
        {"variant": "current", "weight": 100, "buckets": [0, 99], "model_version": "base"}
    ]
    assert view["user"]["variant"] == "current"
    assert view["report"]["variants"]["current"]["versions"]["base"]["lists"] == 1
    too_long = client.get("/api/ab?user_id=" + "x" * 200)
    assert too_long.status_code == 400 and too_long.json["field"] == "user_id"
