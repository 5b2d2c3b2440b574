"""`next_cursor` continues the list the first page was cut from (a snapshot), with and without
Redis: no item skipped or repeated after a delete, a purchase or a click between pages."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest

from threefold.apps.recs.rules import encode_cursor, read_cursor
from threefold.apps.recs.web.shared import EXTENSION
from threefold.core.errors import ConfigError


@pytest.fixture(params=["no-redis", "redis"])
def make_client(request, make_app) -> Callable[[], Any]:
    """`make_client()` -> a test client of a fresh app (a worker); with Redis, every worker
    made in one test shares its Redis and key prefix."""
    settings: dict[str, Any] = {}
    if request.param == "redis":
        prefix = request.getfixturevalue("redis_prefix")
        settings = {"redis_url": request.getfixturevalue("redis_url"), "redis_prefix": prefix}

    def make() -> Any:
        return make_app(**settings).test_client()

    return make


def page(client, user: str, **params: Any) -> dict[str, Any]:
    query = "&".join(f"{key}={value}" for key, value in {"user_id": user, **params}.items())
    response = client.get(f"/api/recommendations?{query}")
    assert response.status_code == 200, response.json
    return response.json


def ids(body: dict[str, Any]) -> list[str]:
    return [item["item_id"] for item in body["items"]]


def test_a_delete_between_pages_skips_nothing(make_client, admin_headers):
    """The reviewer's u007 case: deleting an item of page 1 made page 2 skip kt-005."""
    client = make_client()
    first = page(client, "u007", k=5)
    expected = ids(page(client, "u007", k=5, offset=5))  # page 2 ranked before the delete
    assert client.delete(f"/api/items/{ids(first)[0]}", headers=admin_headers).status_code == 200
    second = page(client, "u007", k=5, cursor=first["next_cursor"])
    assert ids(second) == expected
    assert second["cursor"] == "snapshot"
    assert second["offset"] == 5 and second["list_id"] != first["list_id"]
    assert {"score", "reason", "because_item_id", "title"} <= set(second["items"][0])


def test_a_click_between_pages_keeps_the_list(make_client):
    """The reviewer's u004 case: a click on page 1 gave page 2 an entirely different set."""
    client = make_client()
    first = page(client, "u004", k=5)
    expected = ids(page(client, "u004", k=5, offset=5))
    clicked = {"user_id": "u004", "item_id": ids(first)[0], "event": "click"}
    assert client.post("/api/events", json=clicked).status_code == 202
    second = page(client, "u004", k=5, cursor=first["next_cursor"])
    third = page(client, "u004", k=5, cursor=second["next_cursor"])
    assert ids(second) == expected
    shown = ids(first) + ids(second) + ids(third)
    assert len(shown) == len(set(shown)) == 15


def test_items_deleted_or_bought_since_leave_later_pages(make_client, admin_headers):
    client = make_client()
    first = page(client, "u007", k=5)
    later = ids(page(client, "u007", k=7, offset=5))  # page 2 and the two items after it
    deleted, bought = later[1], later[3]
    assert client.delete(f"/api/items/{deleted}", headers=admin_headers).status_code == 200
    purchase = {"user_id": "u007", "item_id": bought, "event": "purchase"}
    assert client.post("/api/events", json=purchase).status_code == 202
    second = page(client, "u007", k=5, cursor=first["next_cursor"])
    assert ids(second) == [item for item in later if item not in (deleted, bought)]
    third = page(client, "u007", k=5, cursor=second["next_cursor"])
    assert not set(ids(third)) & set(ids(first) + ids(second))


def test_another_users_cursor_is_not_honoured(make_client):
    client = make_client()
    theirs = page(client, "u004", k=5)["next_cursor"]
    mine = page(client, "u007", k=5, cursor=theirs)
    assert mine["cursor"] == "mismatch" and mine["user_id"] == "u007"
    assert ids(mine) == ids(page(client, "u007", k=5, offset=5))  # ranked anew for u007
    other_filters = page(client, "u004", k=6, cursor=theirs)
    assert other_filters["cursor"] == "mismatch"


def test_an_expired_snapshot_falls_back_to_ranking_at_the_offset(make_client):
    client = make_client()
    first = page(client, "u007", k=5)
    store = client.application.extensions[EXTENSION].snapshots
    if store.redis.url is None:
        store.clock = lambda: float("inf")  # every local snapshot past its TTL
    else:
        redis = store.redis.client()
        assert redis.delete(*redis.keys(f"{store.redis.prefix}snapshot:*")) == 1
    second = page(client, "u007", k=5, cursor=first["next_cursor"])
    assert second["cursor"] == "expired"
    assert ids(second) == ids(page(client, "u007", k=5, offset=5))
    unknown = page(client, "u007", k=5, cursor=encode_cursor(5, "A" * 16))
    assert unknown["cursor"] == "expired" and ids(unknown) == ids(second)


def test_a_cursor_on_another_worker(make_client):
    """With Redis every worker reads the snapshot; without, another worker ranks anew."""
    one, other = make_client(), make_client()
    first = page(one, "u004", k=5)
    second = page(other, "u004", k=5, cursor=first["next_cursor"])
    shared = one.application.extensions[EXTENSION].snapshots.redis.url is not None
    assert second["cursor"] == ("snapshot" if shared else "expired")
    assert not set(ids(second)) & set(ids(first))


def test_an_offset_cursor_of_before_still_pages(make_client):
    client = make_client()
    body = page(client, "u007", k=5, cursor=encode_cursor(5))
    assert ids(body) == ids(page(client, "u007", k=5, offset=5))
    assert "cursor" not in body
    assert read_cursor(body["next_cursor"]).offset == 10


def test_snapshot_cursors_read_back_and_forged_ones_are_refused():
    cursor = read_cursor(encode_cursor(15, "abcdEFGH1234_-xy"))
    assert (cursor.offset, cursor.snapshot) == (15, "abcdEFGH1234_-xy")
    for forged in ("s:short:5", "s:abcdEFGH1234_-xy:-5", "s:abcdEFGH1234_-xy:\u0665", "s::5"):
        text = base64.urlsafe_b64encode(forged.encode()).decode().rstrip("=")
        with pytest.raises(ConfigError, match="pass next_cursor as is"):
            read_cursor(text)


def test_past_the_snapshot_the_pages_go_on_ranked_anew(make_app):
    """A first page keeps only as much of the list as its candidate pool ranks (deeper would
    cost every first page a bigger pool); the page that reaches its end hands over to an
    offset cursor, and the pages together still repeat nothing."""
    client = make_app(candidate_pool=10).test_client()  # a snapshot of 6 items at k=5
    first = page(client, "u007", k=5)
    second = page(client, "u007", k=5, cursor=first["next_cursor"])
    assert second["cursor"] == "snapshot" and len(second["items"]) == 1
    assert read_cursor(second["next_cursor"]).snapshot is None
    assert second["next_offset"] == 6
    third = page(client, "u007", k=5, cursor=second["next_cursor"])
    shown = ids(first) + ids(second) + ids(third)
    assert len(shown) == len(set(shown)) == 11
