"""Event parsing and loading."""

from __future__ import annotations

import pytest

from threefold.apps.recs.events import (
    Event,
    group_by_user,
    load_events,
    parse_event,
    with_accept_ids,
    with_spool_ids,
)
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


def test_accepted_events_get_an_id_each_unless_the_client_sent_one():
    bare, same = Event("u", "i", "view", 1.0), Event("u", "i", "view", 1.0)
    client = Event("u", "i", "view", 1.0, event_id="e-1")
    accepted = with_accept_ids([bare, same, client])
    assert [e.write_id[:2] for e in accepted] == ["s:", "s:", "c:"]
    assert accepted[0].write_id != accepted[1].write_id  # two identical events are two events
    assert accepted[2] is client and client.write_id == "c:e-1"
    assert accepted[0] == bare  # the id is not part of what happened
    assert Event.from_dict(accepted[0].to_dict()).accept_id == accepted[0].accept_id
    assert with_accept_ids(accepted) == accepted
    assert [e.accept_id for e in with_accept_ids(accepted)] == [e.accept_id for e in accepted]


def test_records_spooled_without_ids_get_the_same_ids_at_every_replay():
    """An earlier version spooled events without ids; a replay repeated (a worker died before
    it emptied the spool) must give them the same ids, or Redis stores them twice."""
    old = [Event("u", "i", "view", 1.0), Event("u", "i", "view", 1.0)]
    ids = [e.write_id for e in with_spool_ids(old)]
    assert ids == [e.write_id for e in with_spool_ids(old)]
    assert ids[0] != ids[1]  # the same content twice in the spool: two events
    accepted = with_accept_ids(old)
    assert with_spool_ids(accepted) == accepted
    assert [e.accept_id for e in with_spool_ids(accepted)] == [e.accept_id for e in accepted]
