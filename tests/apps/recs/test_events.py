"""Event parsing and loading."""

from __future__ import annotations

import pytest

from threefold.apps.recs.events import Event, group_by_user, load_events, parse_event
from threefold.core.errors import DataError


def test_event_defaults_and_weights():
    event = parse_event({"user_id": 7, "item_id": "kt-001"}, now=123.0)
    assert event == Event("7", "kt-001", "view", 123.0)
    assert parse_event({"user_id": "u", "item_id": "i", "event": "Purchase"}).weight == 4.0


def test_iso_timestamps_are_accepted():
    event = parse_event({"user_id": "u", "item_id": "i", "timestamp": "1970-01-01T00:01:00Z"})
    assert event.timestamp == 60.0


@pytest.mark.parametrize(
    ("values", "column", "message"),
    [
        ({"item_id": "i"}, "user_id", "'user_id' must be a non-empty string"),
        ({"user_id": "u", "item_id": ""}, "item_id", "'item_id' must be a non-empty string"),
        ({"user_id": "u", "item_id": "i", "event": "like"}, "event", r"\['click', 'purchase'"),
        ({"user_id": "u", "item_id": "i", "timestamp": "soon"}, "timestamp", "ISO 8601"),
        ({"user_id": "u", "item_id": "i", "rating": "high"}, "rating", "must be a number"),
        ({"user_id": "u", "item_id": "zzz"}, "item_id", "unknown item_id 'zzz'"),
    ],
)
def test_bad_events_name_the_column(values, column, message):
    with pytest.raises(DataError, match=message) as caught:
        parse_event(values, known_items={"i"})
    assert caught.value.column == column


def test_loading_sorts_by_time_and_groups_by_user(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text("user_id,item_id,timestamp,rating\nb,x,5,4\na,y,3,\na,x,1,\n")
    events = load_events(path, known_items={"x", "y"})
    assert [e.timestamp for e in events] == [1.0, 3.0, 5.0]
    assert events[2].rating == 4.0
    assert [e.item_id for e in group_by_user(events)["a"]] == ["x", "y"]


def test_unknown_item_in_a_file_names_the_line(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text("user_id,item_id\na,x\na,nope\n")
    with pytest.raises(DataError, match="line 3, column item_id: unknown item_id 'nope'"):
        load_events(path, known_items={"x"})
