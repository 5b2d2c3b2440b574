"""What the API refuses rather than silently reading another way: number ids, ids the user picker
would show wrong, unknown keys, a cursor with an offset, an empty item id in the URL."""

from __future__ import annotations

import json
import logging
import time
from urllib.parse import quote

import pytest

from threefold.apps.recs.config import DEFAULT_EVENTS
from threefold.apps.recs.events import Event


@pytest.fixture(scope="module")
def client(make_app):
    return make_app().test_client()


def _users(client) -> list[str]:
    return client.get("/api/users?limit=1000").json["users"]


def test_a_number_user_id_is_400_naming_the_field_and_types(client):
    response = client.post("/api/events", json={"user_id": 5, "item_id": "od-001"})
    assert response.status_code == 400
    assert response.json["field"] == "user_id"
    assert "'user_id' must be a string, found number 5; send \"5\"" in response.json["message"]
    assert "5" not in _users(client)


@pytest.mark.parametrize(
    ("user_id", "found"),
    [
        ("nul\x00user", "U+0000"),
        ("admin\u202etxt.exe", "U+202E RIGHT-TO-LEFT OVERRIDE"),
        ("\u200b", "U+200B ZERO WIDTH SPACE"),
        ("\u200b\u200b\u200b", "U+200B ZERO WIDTH SPACE"),
    ],
)
def test_an_id_the_user_picker_would_show_wrong_is_400_and_never_listed(client, user_id, found):
    body = {
        "events": [
            {"user_id": "fine", "item_id": "od-001"},
            {"user_id": user_id, "item_id": "od-001"},
        ]
    }
    response = client.post("/api/events", json=body)
    assert response.status_code == 400
    assert (response.json["field"], response.json["index"]) == ("user_id", 1)
    message = response.json["message"]
    assert found in message and repr(user_id)[1:-1] in message  # escaped, as it was found
    assert "letters, digits" in message  # and what is allowed
    assert user_id not in _users(client)
    query = client.get(f"/api/recommendations?user_id={quote(user_id)}")
    assert query.status_code == 400 and found in query.json["message"]


def test_user_ids_are_kept_as_given_so_each_spelling_is_its_own_user(client):
    """Histories stored before ids had a rule are keyed by the id as posted: not normalized."""
    composed, decomposed = "ren\u00e9e", "rene\u0301e"
    event = {"user_id": f" {decomposed} ", "item_id": "bt-001", "event": "purchase"}
    posted = client.post("/api/events", json=event)
    assert posted.status_code == 202 and posted.json["users"] == [decomposed]
    served = client.get(f"/api/recommendations?user_id={quote(decomposed)}&k=3").json
    assert served["cold_start"] is False
    other = client.get(f"/api/recommendations?user_id={quote(composed)}&k=3").json
    assert other["cold_start"] is True


@pytest.mark.integration
def test_a_history_stored_under_a_decomposed_user_id_is_read_and_extended(
    make_app, redis_url, redis_prefix, redis_client
):
    """Before the id rule a posted `jose\u0301` was stored under that spelling; it keeps working."""
    decomposed = "jose\u0301"
    history = f"{redis_prefix}history:{decomposed}"
    for item in ("od-001", "od-002"):
        stored = Event(user_id=decomposed, item_id=item, event="purchase", timestamp=time.time())
        redis_client.rpush(history, json.dumps(stored.to_dict()))
    client = make_app(redis_url=redis_url, redis_prefix=redis_prefix).test_client()
    served = client.get(f"/api/recommendations?user_id={quote(decomposed)}").json
    assert served["cold_start"] is False
    assert not {"od-001", "od-002"} & {item["item_id"] for item in served["items"]}  # bought
    event = {"user_id": decomposed, "item_id": "bt-001", "event": "click"}
    assert client.post("/api/events", json=event).status_code == 202
    assert redis_client.llen(history) == 3  # one history, not split by spelling
    assert not redis_client.exists(f"{redis_prefix}history:jos\u00e9")


def test_the_id_length_limit_stays_128(client):
    too_long = client.post("/api/events", json={"user_id": "u" * 129, "item_id": "od-001"})
    assert too_long.status_code == 400
    assert "'user_id' is 129 characters; the limit is 128" in too_long.json["message"]
    assert client.get(f"/api/recommendations?user_id={'u' * 129}").status_code == 400
    assert client.get(f"/api/recommendations?user_id={'u' * 128}").status_code == 200


@pytest.mark.parametrize(
    ("body", "unknown"),
    [
        ({"events": [{"user_id": "x", "item_id": "od-001"}], "dry_run": True}, ["dry_run"]),
        (
            {
                "user_id": "x",
                "item_id": "od-002",
                "events": [{"user_id": "x", "item_id": "od-001"}],
            },
            ["item_id", "user_id"],
        ),
    ],
)
def test_unknown_top_level_keys_next_to_events_are_400(client, body, unknown):
    response = client.post("/api/events", json=body)
    assert response.status_code == 400
    assert response.json["unknown"] == unknown and response.json["allowed"] == ["events"]
    assert f"unknown top-level key(s) {unknown}" in response.json["message"]


def test_unknown_top_level_keys_next_to_items_are_400(admin_headers, client):
    item = {"item_id": "ty-300", "title": "Kite", "description": "", "category": "Toys & Games"}
    body = {"items": [item], "replace_all": True}
    response = client.post("/api/items", json=body, headers=admin_headers)
    assert response.status_code == 400
    assert (response.json["unknown"], response.json["allowed"]) == (["replace_all"], ["items"])
    assert client.get("/api/items/ty-300").status_code == 404


def test_an_unknown_event_field_is_400_in_both_forms(client):
    """A typo'd `evnt` would otherwise store a view instead of the purchase meant."""
    event = {"user_id": "typo-user", "item_id": "od-001", "evnt": "purchase"}
    for body in (event, {"events": [event]}):
        response = client.post("/api/events", json=body)
        assert response.status_code == 400
        assert response.json["field"] == "evnt"
        assert "unknown field(s) ['evnt']; an event has ['event', " in response.json["message"]
    assert "typo-user" not in _users(client)


def test_cursor_and_offset_together_are_400(client):
    first = client.get("/api/recommendations?user_id=u002&k=3").json
    both = client.get(
        f"/api/recommendations?user_id=u002&k=3&offset=0&cursor={first['next_cursor']}"
    )
    assert both.status_code == 400
    assert both.json["field"] == "offset"
    assert "not both" in both.json["message"]


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/api/items//similar"), ("GET", "/api/items//"), ("PUT", "/api/items//similar")],
)
def test_an_empty_item_id_in_the_url_is_a_json_404_about_it(admin_headers, client, method, path):
    """The router would redirect to /api/items/similar: the item called 'similar' (a 308 also
    repeats a PUT there)."""
    response = client.open(path, method=method, headers=admin_headers, json={})
    assert response.status_code == 404
    assert response.json["field"] == "item_id"
    assert response.json["message"].startswith(f"the URL {path} holds no item_id")


NEW_ITEM = {"item_id": "ty-400", "title": "Kite", "description": "", "category": "Toys & Games"}
RULE_BREAKING_ITEM_IDS = [
    ("nul\x00item", "U+0000"),
    ("sku\u202etxt.exe", "U+202E RIGHT-TO-LEFT OVERRIDE"),
    ("\u200b\u200b", "U+200B ZERO WIDTH SPACE"),
    ("\u3164", "U+3164 HANGUL FILLER (a blank filler)"),
    ("\u0301", "holds nothing visible"),
]


def _item_forms(client, item: dict, headers: dict) -> list[tuple[object, int | None]]:
    """The item posted on its own (index 0), second in a batch, and PUT to its id."""
    url_id = quote(item["item_id"], safe="")
    return [
        (client.post("/api/items", json=item, headers=headers), 0),
        (client.post("/api/items", json={"items": [NEW_ITEM, item]}, headers=headers), 1),
        (client.put(f"/api/items/{url_id}", json=item, headers=headers), None),
    ]


@pytest.mark.parametrize(("item_id", "found"), RULE_BREAKING_ITEM_IDS)
def test_an_item_id_the_id_rule_refuses_is_400_in_every_form(admin_headers, client, item_id, found):
    """Held to the rule user ids follow: the store would show it reordered, blank or cut."""
    item = {**NEW_ITEM, "item_id": item_id}
    for response, index in _item_forms(client, item, admin_headers):
        assert response.status_code == 400, response.json
        assert (response.json["field"], response.json.get("index")) == ("item_id", index)
        message = response.json["message"]
        assert found in message
        assert repr(item_id)[1:-1] in message or ascii(item_id)[1:-1] in message  # escaped
        assert "letters, digits" in message  # what an id may hold
        assert "choose an item_id the rule allows" in message  # and the fix
    assert client.get(f"/api/items/{quote(item_id, safe='')}").status_code == 404
    assert client.get("/api/items/ty-400").status_code == 404  # the batch stored nothing


@pytest.mark.parametrize(
    ("item_id", "similar_of"), [("x/similar", "x"), ("sku/1/similar", "sku/1")]
)
def test_an_item_id_its_url_would_not_reach_is_400_in_every_form(
    admin_headers, client, item_id, similar_of
):
    """`GET /api/items/x/similar` (and `x%2Fsimilar`) are the similar items of `x`: an item
    stored as `x/similar` was answered 201 and could never be read."""
    item = {**NEW_ITEM, "item_id": item_id}
    for response, index in _item_forms(client, item, admin_headers):
        assert response.status_code == 400, response.json
        assert (response.json["field"], response.json.get("index")) == ("item_id", index)
        message = response.json["message"]
        assert f"GET /api/items/{item_id} names the similar items of {similar_of!r}" in message
        assert "may hold '/' but not end in '/similar'" in message
    assert client.get("/api/items/ty-400").status_code == 404  # the batch stored nothing


def test_an_item_id_starting_with_a_slash_is_400(admin_headers, client):
    response = client.post(
        "/api/items", json={**NEW_ITEM, "item_id": "/lamp"}, headers=admin_headers
    )
    assert response.status_code == 400, response.json
    assert response.json["field"] == "item_id"
    assert "may not start with '/'" in response.json["message"]


def test_a_batch_naming_one_item_twice_is_400_naming_it(admin_headers, client):
    """Which of the two was meant is unknown (it reported "added": ["dup1", "dup1"])."""
    twice = {"items": [NEW_ITEM, {**NEW_ITEM, "item_id": " ty-400 ", "title": "Kite 2"}]}
    response = client.post("/api/items", json=twice, headers=admin_headers)
    assert response.status_code == 400, response.json
    assert (response.json["field"], response.json["index"]) == ("item_id", 1)
    assert "item 1: item_id 'ty-400' is item 0 of this batch too" in response.json["message"]
    assert client.get("/api/items/ty-400").status_code == 404


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("title", "\u200b"),
        ("title", " \u200b\u200d "),
        ("category", "\u200b"),
        ("category", "Toys|\u200b"),
    ],
)
def test_a_title_or_category_with_nothing_visible_is_400_in_every_form(
    admin_headers, client, field, value
):
    """The store would show a blank title or category name."""
    item = {**NEW_ITEM, "item_id": "ty-401", field: value}
    for response, index in _item_forms(client, item, admin_headers):
        assert response.status_code == 400, response.json
        assert (response.json["field"], response.json.get("index")) == (field, index)
        assert "holds nothing visible" in response.json["message"]
        assert "U+200B ZERO WIDTH SPACE" in response.json["message"]
    assert client.get("/api/items/ty-401").status_code == 404


def test_item_ids_are_stored_as_given_like_user_ids(admin_headers, client):
    """Not NFC-normalized: a decomposed id is found under that spelling only."""
    composed, decomposed = "caf\u00e9-mug", "cafe\u0301-mug"
    item = {**NEW_ITEM, "item_id": f" {decomposed} "}
    stored = client.post("/api/items", json=item, headers=admin_headers)
    assert stored.status_code == 201 and stored.json["added"] == [decomposed]
    assert client.get(f"/api/items/{quote(decomposed)}").status_code == 200
    assert client.get(f"/api/items/{quote(composed)}").status_code == 404
    deleted = client.delete(f"/api/items/{quote(decomposed)}", headers=admin_headers)
    assert deleted.status_code == 200


def test_a_number_item_id_is_400_as_an_events_is(admin_headers, client):
    """Ids are JSON strings in the API (a file's `42` still reads as "42")."""
    item = {**NEW_ITEM, "item_id": 5}
    for body, index in ((item, 0), ({"items": [NEW_ITEM, item]}, 1)):
        response = client.post("/api/items", json=body, headers=admin_headers)
        assert response.status_code == 400, response.json
        assert (response.json["field"], response.json.get("index")) == ("item_id", index)
        assert response.json["message"].endswith('found number 5; send "5"')
    assert client.get("/api/items/5").status_code == 404


def test_an_unknown_item_field_is_400_in_every_form(admin_headers, client):
    """A typo'd `titel` would otherwise be dropped while the item is stored."""
    item = {**NEW_ITEM, "titel": "Kite 2", "colour": "red"}
    for response, index in _item_forms(client, item, admin_headers):
        assert response.status_code == 400, response.json
        assert (response.json["field"], response.json.get("index")) == ("colour", index)
        message = response.json["message"]
        assert "unknown field(s) ['colour', 'titel']; an item has ['category', " in message
        assert "'title']" in message
    assert client.get("/api/items/ty-400").status_code == 404


LEGACY_ID = "sku\u202eexe.txt"  # stored before item ids had a rule


def _legacy_item_still_works(client, admin_headers) -> None:
    """Readable, recommendable and deletable; edits through the API are refused with the fix."""
    url_id = quote(LEGACY_ID, safe="")
    assert client.get(f"/api/items/{url_id}").json["item_id"] == LEGACY_ID
    assert client.get(f"/api/items/{url_id}/similar?k=3").status_code == 200
    similar = client.get("/api/items/kt-003/similar?k=3").json["items"]
    assert LEGACY_ID in [item["item_id"] for item in similar]  # its twin's neighbour
    event = {"user_id": "legacy-fan", "item_id": LEGACY_ID, "event": "purchase"}
    assert client.post("/api/events", json=event).status_code == 202
    edit = {"title": "Renamed", "description": "", "category": "Kitchen"}
    renamed = client.put(f"/api/items/{url_id}", json=edit, headers=admin_headers)
    assert renamed.status_code == 400 and "DELETE it" in renamed.json["message"]
    assert client.delete(f"/api/items/{url_id}", headers=admin_headers).status_code == 200
    assert client.get(f"/api/items/{url_id}").status_code == 404


def test_a_catalog_file_item_id_the_rule_refuses_loads_with_a_warning(
    admin_headers, make_app, tmp_path, caplog
):
    from threefold.apps.recs.config import DEFAULT_ITEMS

    shipped = DEFAULT_ITEMS.read_text(encoding="utf-8")
    twin = next(line for line in shipped.splitlines() if line.startswith("kt-003,"))
    path = tmp_path / "catalog.csv"
    path.write_text(f"{shipped.rstrip()}\n{LEGACY_ID}{twin[len('kt-003') :]}\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="threefold.apps.recs.catalog"):
        client = make_app(items_path=path).test_client()
    [warning] = [r for r in caplog.records if r.name == "threefold.apps.recs.catalog"]
    message = warning.getMessage()
    assert f"{path}: 1 item_id(s) the id rule refuses" in message
    assert "line 74" in message and "U+202E RIGHT-TO-LEFT OVERRIDE" in message
    _legacy_item_still_works(client, admin_headers)


@pytest.mark.integration
def test_an_item_added_through_the_api_before_the_rule_keeps_working(
    admin_headers, make_app, redis_url, redis_prefix, redis_client, catalog
):
    """Its change, in the Redis change log, is replayed by every worker that starts."""
    twin = catalog["kt-003"].to_dict()
    change = {"op": "upsert", "item": {**twin, "item_id": LEGACY_ID}}
    redis_client.rpush(f"{redis_prefix}catalog:changes", json.dumps(change))
    client = make_app(redis_url=redis_url, redis_prefix=redis_prefix).test_client()
    _legacy_item_still_works(client, admin_headers)


def test_the_user_picker_lists_only_users_the_api_serves(make_app, tmp_path):
    """A seed log's user id that the id rule refuses still counts for statistics, but the
    storefront's picker must not offer it: every request for that user would be a 400."""
    events = tmp_path / "events.csv"
    shipped = (DEFAULT_EVENTS).read_text(encoding="utf-8")
    events.write_text(shipped + "zw\u200bid,bk-003,view,1790975999\n", encoding="utf-8")
    client = make_app(events_path=events).test_client()
    users = client.get("/api/users?limit=1000").json["users"]
    assert "zw\u200bid" not in users
    assert client.get("/api/recommendations?user_id=zw%E2%80%8Bid").status_code == 400
    assert users == sorted(users) and len(users) == len(set(users)) > 10
    assert len(client.get("/api/users?limit=3").json["users"]) == 3


def test_the_user_picker_lists_the_seed_log_shoppers_never_posted_user_ids(make_app, sample_events):
    """It listed every user id ever posted to the worker, sorted, unauthenticated: a posted
    `!!! FREE GIFT CARDS ...` led the storefront's list, customers' ids were public, and two
    workers listed different users."""
    client = make_app().test_client()
    posted = ["!!! FREE GIFT CARDS at evil.example !!!", "customer-4711"]
    for user_id in posted:
        view = {"user_id": user_id, "item_id": "od-001"}
        assert client.post("/api/events", json=view).status_code == 202
    users = _users(client)
    assert users == sorted({event.user_id for event in sample_events})
    assert not set(posted) & set(users)
