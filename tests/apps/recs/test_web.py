"""HTTP API without Redis (degraded): recommendations, events, items and every error path."""

from __future__ import annotations

import base64
import json
import time

import pytest

from threefold.apps.recs.config import RecsConfig
from threefold.apps.recs.web.shared import EXTENSION
from threefold.core.errors import ConfigError

NEW_ITEM = {
    "item_id": "ty-200",
    "title": "Magnetic Tiles Rocket Set",
    "description": "Eighty magnetic building tiles to build rockets and space towers.",
    "category": "Toys & Games",
    "price": 49.0,
    "tags": ["building", "space", "kids"],
}


@pytest.fixture(scope="module")
def client(make_app):
    app = make_app()
    return app.test_client()


def test_healthz_and_metrics(client):
    health = client.get("/healthz")
    assert health.status_code == 503
    assert health.json["status"] == "degraded"
    assert health.json["redis"] == "not configured"
    assert "set REDIS_URL" in health.json["reason"]
    assert health.json["items"] >= 72
    metrics = client.get("/metrics").get_data(as_text=True)
    assert "recs_cache_hit_rate" in metrics
    assert "recs_catalog_items" in metrics
    rebuild = [line for line in metrics.splitlines() if line.startswith("recs_statistics_rebuild")]
    assert len(rebuild) == 1 and float(rebuild[0].split()[1]) > 0.0  # the startup build


def test_storefront_embeds_the_chat_widget_only_when_a_chat_url_is_set(client, make_app):
    assert "widget.js" not in client.get("/store").text
    with_chat = make_app(chat_url="http://127.0.0.1:8001/").test_client().get("/store").text
    assert '<script src="http://127.0.0.1:8001/static/widget.js"' in with_chat
    with pytest.raises(ConfigError, match="chat_url must be the FAQ bot's http"):
        RecsConfig(chat_url="127.0.0.1:8001")


def test_recommendations_for_a_known_user(client):
    response = client.get("/api/recommendations?user_id=u001&k=4")
    assert response.status_code == 200
    body = response.json
    assert body["cold_start"] is False
    assert len(body["items"]) == 4
    first = body["items"][0]
    assert {"item_id", "title", "category", "score", "reason"} <= set(first)
    assert body["cached"] is False  # no Redis: never cached


def test_unknown_user_gets_a_cold_start_list_not_an_error(client):
    response = client.get("/api/recommendations?user_id=somebody-new&k=3")
    assert response.status_code == 200
    assert response.json["cold_start"] is True
    assert len(response.json["items"]) == 3


def test_cursor_pages_through_results(client):
    first = client.get("/api/recommendations?user_id=u002&k=3").json
    second = client.get(f"/api/recommendations?user_id=u002&k=3&cursor={first['next_cursor']}")
    assert second.status_code == 200
    assert second.json["offset"] == 3
    both = client.get("/api/recommendations?user_id=u002&k=6").json
    assert [i["item_id"] for i in first["items"] + second.json["items"]] == [
        i["item_id"] for i in both["items"]
    ]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("k=3", "user_id"),
        ("user_id=u001&k=0", "k"),
        ("user_id=u001&k=1000", "k"),
        ("user_id=u001&k=ten", "k"),
        ("user_id=u001&offset=-1", "offset"),
        ("user_id=u001&diversity=2", "diversity"),
        ("user_id=u001&category=Spaceships", "category"),
        ("user_id=u001&cursor=not-a-cursor", "cursor"),
        ("user_id=u001&exclude_seen=maybe", "exclude_seen"),
    ],
)
def test_bad_query_parameters_are_400_naming_the_field(client, query, field):
    response = client.get(f"/api/recommendations?{query}")
    assert response.status_code == 400
    assert response.json["field"] == field
    assert response.json["message"]


@pytest.mark.parametrize(
    "text", ["o:1000000", "o:99999999999999999999", "o: 5", "o:1_0", "o:\u0665"]
)
def test_a_forged_cursor_is_400_not_a_page_past_the_offset_limit(client, text):
    """`offset` stops at 10 x max_k; a cursor is no way around it (a pool of 2 x offset items
    is ranked), and only the form the API writes is read."""
    cursor = base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")
    response = client.get(f"/api/recommendations?user_id=u001&cursor={cursor}")
    assert response.status_code == 400
    assert response.json["field"] == "cursor"
    assert "pass next_cursor as is" in response.json["message"]


def test_event_changes_the_users_list(client):
    before = client.get("/api/recommendations?user_id=fresh-user&k=5").json
    assert before["cold_start"]
    posted = client.post(
        "/api/events", json={"user_id": "fresh-user", "item_id": "bt-001", "event": "purchase"}
    )
    assert posted.status_code == 202
    assert posted.json == {"accepted": 1, "duplicates": 0, "users": ["fresh-user"], "shared": False}
    after = client.get("/api/recommendations?user_id=fresh-user&k=5").json
    assert after["cold_start"] is False
    assert "bt-001" not in [i["item_id"] for i in after["items"]]


def test_the_order_events_arrive_in_does_not_change_the_list(client):
    """A history is read oldest first by timestamp: an old event sent late (an app flushing its
    offline queue) is not taken for the shopper's newest interest."""
    now = time.time()
    new = {"item_id": "bk-002", "event": "click", "timestamp": now}
    old = {"item_id": "kt-005", "event": "click", "timestamp": now - 300 * 86_400}
    lists = []
    for user, events in (("in-order", [old, new]), ("late-old-event", [new, old])):
        body = {"events": [{**event, "user_id": user} for event in events]}
        assert client.post("/api/events", json=body).status_code == 202
        served = client.get(f"/api/recommendations?user_id={user}&k=5").json
        lists.append([(i["item_id"], i["reason"]) for i in served["items"]])
    assert lists[1] == lists[0]


def test_event_batch_is_accepted(client):
    batch = {
        "events": [
            {"user_id": "batch-user", "item_id": "od-001", "event": "view"},
            {"user_id": "batch-user", "item_id": "od-002", "event": "click", "timestamp": 5},
        ]
    }
    response = client.post("/api/events", json=batch)
    assert response.status_code == 202
    assert response.json["accepted"] == 2


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"event": "click", "type": "purchase"}, "event"),
        ({"event": "CLICK"}, "event"),
        ({"event_id": "evt-9\n"}, "event_id"),
        ({"event_id": ""}, "event_id"),
        ({"list_id": "list-1\n"}, "list_id"),
        ({"timestamp": "0001-01-01"}, "timestamp"),
    ],
)
def test_an_event_the_contract_refuses_is_400_naming_the_field(client, event, field):
    response = client.post("/api/events", json={"user_id": "strict", "item_id": "od-001", **event})
    assert response.status_code == 400, response.json
    assert response.json["field"] == field


def test_a_purchase_under_the_older_key_beside_a_null_event_is_a_purchase(client):
    bought = {"user_id": "null-event", "item_id": "od-003", "event": None, "type": "purchase"}
    assert client.post("/api/events", json=bought).status_code == 202
    histories = client.application.extensions[EXTENSION].histories
    assert [e.event for e in histories.get("null-event")] == ["purchase"]
    assert histories.purchased("null-event") == {"od-003"}


@pytest.mark.parametrize("redis_url", [None, "redis://127.0.0.1:1/0"], ids=["none", "down"])
def test_a_post_of_only_duplicates_without_redis_is_not_called_shared(make_app, redis_url):
    """It answered `"shared": true` although nothing it held was in Redis."""
    client = make_app(redis_url=redis_url).test_client()
    view = {"user_id": "retrier", "item_id": "od-001", "event_id": "once-only"}
    first = client.post("/api/events", json=view).json
    again = client.post("/api/events", json=view).json
    assert (first["accepted"], first["shared"]) == (1, False)
    assert (again["accepted"], again["duplicates"], again["shared"]) == (0, 1, False)


def test_unknown_item_in_an_event_is_422_with_the_reason(client):
    batch = {
        "events": [
            {"user_id": "x", "item_id": "od-001"},
            {"user_id": "x", "item_id": "no-such-item"},
        ]
    }
    response = client.post("/api/events", json=batch)
    assert response.status_code == 422
    assert response.json["error"] == "unknown_item"
    assert response.json["index"] == 1
    assert "no-such-item" in response.json["message"]
    assert "not in the catalog" in response.json["message"]


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        ("{not json", "application/json", 400),
        ("[1, 2]", "application/json", 400),
        ('{"user_id": "x", "item_id": "od-001"}', "text/plain", 415),
        ('{"events": []}', "application/json", 400),
        ('{"events": [42]}', "application/json", 400),
        ('{"user_id": "x", "item_id": "od-001", "event": "like"}', "application/json", 400),
        ('{"item_id": "od-001"}', "application/json", 400),
        (
            '{"user_id": "x", "item_id": "od-001", "timestamp": "yesterday"}',
            "application/json",
            400,
        ),
    ],
)
def test_malformed_events_are_4xx_json(client, body, content_type, status):
    response = client.post("/api/events", data=body, content_type=content_type)
    assert response.status_code == status
    assert response.is_json
    assert response.json["message"]


def test_oversized_requests_are_413(client):
    huge = json.dumps({"user_id": "x", "item_id": "od-001", "padding": "a" * 300_000})
    response = client.post("/api/events", data=huge, content_type="application/json")
    assert response.status_code == 413
    too_many = {"events": [{"user_id": "x", "item_id": "od-001"}] * 501}
    response = client.post("/api/events", json=too_many)
    assert response.status_code == 413
    assert response.json["limit"] == 500


def test_similar_items(client):
    response = client.get("/api/items/kt-003/similar?k=3")
    assert response.status_code == 200
    assert len(response.json["items"]) == 3
    assert "kt-003" not in [i["item_id"] for i in response.json["items"]]
    assert client.get("/api/items/nope/similar").status_code == 404
    assert client.get("/api/items/kt-003/similar?k=-1").status_code == 400


def test_admin_endpoints_need_the_token(client):
    assert client.post("/api/items", json=NEW_ITEM).status_code == 401
    wrong = {"Authorization": "Bearer wrong"}
    assert client.post("/api/items", json=NEW_ITEM, headers=wrong).status_code == 403
    assert client.delete("/api/items/kt-001", headers=wrong).status_code == 403
    assert client.put("/api/items/kt-001", json=NEW_ITEM, headers=wrong).status_code == 403


def test_admin_disabled_without_a_configured_token(admin_headers, make_app):
    app = make_app(admin_token=None)
    response = app.test_client().post("/api/items", json=NEW_ITEM, headers=admin_headers)
    assert response.status_code == 503
    assert "THREEFOLD_RECS_ADMIN_TOKEN is not set" in response.json["message"]  # the real name


def test_item_lifecycle_through_the_api(admin_headers, client):
    created = client.post("/api/items", json=NEW_ITEM, headers=admin_headers)
    assert created.status_code == 201
    assert created.json == {"added": ["ty-200"], "updated": []}
    assert client.get("/api/items/ty-200").json["title"] == NEW_ITEM["title"]
    liked = client.post(
        "/api/events", json={"user_id": "space-kid", "item_id": "ty-004", "event": "purchase"}
    )
    assert liked.status_code == 202
    recs = client.get("/api/recommendations?user_id=space-kid&k=8").json["items"]
    assert "ty-200" in [i["item_id"] for i in recs]
    renamed = {**NEW_ITEM, "title": "Magnetic Tiles Rocket Set Deluxe"}
    updated = client.put("/api/items/ty-200", json=renamed, headers=admin_headers)
    assert updated.status_code == 200
    assert updated.json == {"added": [], "updated": ["ty-200"]}
    mismatch = client.put(
        "/api/items/ty-200", json={**NEW_ITEM, "item_id": "other"}, headers=admin_headers
    )
    assert mismatch.status_code == 400
    padded = client.put("/api/items/%20ty-201", json=NEW_ITEM | {"item_id": " ty-201"},
                        headers=admin_headers)  # fmt: skip
    assert padded.status_code == 400 and "PUT to that id" in padded.json["message"]
    put_new = client.put("/api/items/ty-201", json={**NEW_ITEM, "item_id": "ty-201"},
                         headers=admin_headers)  # fmt: skip
    assert put_new.status_code == 201 and put_new.json["added"] == ["ty-201"]
    long_id = "x" * 5000
    unknown = client.get(f"/api/items/{long_id}").json["message"]
    assert len(unknown) < 200 and "5000 chars" in unknown
    bad = client.post("/api/items", json={**NEW_ITEM, "price": "cheap"}, headers=admin_headers)
    assert bad.status_code == 400
    assert bad.json["field"] == "price"
    assert client.delete("/api/items/ty-200", headers=admin_headers).status_code == 200
    assert client.get("/api/items/ty-200").status_code == 404
    assert client.delete("/api/items/ty-200", headers=admin_headers).status_code == 404
    event = client.post("/api/events", json={"user_id": "space-kid", "item_id": "ty-200"})
    assert event.status_code == 422


@pytest.mark.parametrize("path", ["sku/2024/lamp", "sku%2F2024%2Flamp"])
def test_an_item_id_with_slashes_can_be_read_edited_and_deleted(admin_headers, make_app, path):
    client = make_app().test_client()
    item = {**NEW_ITEM, "item_id": "sku/2024/lamp", "title": "Slash Lamp"}
    assert client.post("/api/items", json=item, headers=admin_headers).status_code == 201
    assert client.get(f"/api/items/{path}").json["title"] == "Slash Lamp"
    similar = client.get(f"/api/items/{path}/similar?k=3")
    assert similar.status_code == 200 and similar.json["item_id"] == "sku/2024/lamp"
    renamed = client.put(
        f"/api/items/{path}", json={**item, "title": "Slash Lamp 2"}, headers=admin_headers
    )
    assert renamed.json == {"added": [], "updated": ["sku/2024/lamp"]}
    assert client.delete(f"/api/items/{path}", headers=admin_headers).status_code == 200
    assert client.get(f"/api/items/{path}").status_code == 404


def test_unknown_route_is_json_404(client):
    response = client.get("/api/nothing-here")
    assert response.status_code == 404
    assert response.is_json


@pytest.mark.slow
def test_app_serves_a_model_built_by_the_cli(tmp_path):
    from click.testing import CliRunner

    from threefold.apps.recs.cli import recs
    from threefold.apps.recs.config import RecsConfig
    from threefold.apps.recs.resources import open_resources
    from threefold.apps.recs.web import create_app
    from threefold.streaming.connections import RedisSettings

    out = tmp_path / "model"
    args = ["build", "--out", str(out), "--max-steps", "2", "--batch-size", "4", "--max-pairs", "8"]
    refused = CliRunner().invoke(recs, [*args, "--sequence-processes", "0"])
    assert refused.exit_code == 2 and "--sequence-processes" in refused.output
    built = CliRunner().invoke(
        recs, [*args, "--sequence-seconds", "20", "--sequence-processes", "1"]
    )
    assert built.exit_code == 0, built.output
    summary = json.loads(built.stdout)
    assert summary["validation"]["users"] > 10
    settings = RecsConfig(model_dir=out)
    client = create_app(settings, open_resources(settings, RedisSettings())).test_client()
    health = client.get("/healthz").json
    assert health["ranker"]["fine_tune"]["steps"] == 2
    response = client.get("/api/recommendations?user_id=u004&k=3")
    assert response.status_code == 200
    assert len(response.json["items"]) == 3
    assert response.json["model_version"] == "model"  # a plain folder serves as its name
    # the sequence ranker is in the folder and in the served ranker; reasons still name items
    assert (out / "sequence" / "ensemble.json").is_file()  # text-aware + ID-only by default
    assert (out / "sequence" / "member-1" / "sequence.pt").is_file()
    assert health["ranker"]["sequence"]["validation"]["users"] > 10
    assert health["ranker"]["sequence"]["processes"] == 1
    assert all(item["reason"] for item in response.json["items"])
