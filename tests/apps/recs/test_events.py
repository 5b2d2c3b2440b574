"""Event parsing and loading."""

from __future__ import annotations

import logging

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
    event = parse_event({"user_id": "7", "item_id": "kt-001"}, now=123.0)
    assert event == Event("7", "kt-001", "view", 123.0)
    assert parse_event({"user_id": "u", "item_id": "i", "event": "purchase"}).weight == 4.0


POSTED = {"user_id": "u", "item_id": "i"}


@pytest.mark.parametrize("absent", [None, ""])
def test_an_empty_event_counts_as_absent_so_the_older_type_key_decides(absent):
    """`{"event": null, "type": "purchase"}` was stored as a view: the purchase was lost."""
    assert parse_event({**POSTED, "event": absent, "type": "purchase"}).event == "purchase"
    assert parse_event({**POSTED, "event": absent}).event == "view"
    assert parse_event({**POSTED, "event": "click", "type": absent}).event == "click"


def test_event_and_type_that_disagree_are_refused_naming_both():
    """`{"event": "click", "type": "purchase"}` was silently a click."""
    with pytest.raises(DataError, match="'event' 'click' and 'type' 'purchase' disagree"):
        parse_event({**POSTED, "event": "click", "type": "purchase"})
    assert parse_event({**POSTED, "event": "click", "type": "click"}).event == "click"


def test_a_posted_event_type_is_lowercase_as_documented_a_file_may_use_any_case(tmp_path):
    with pytest.raises(DataError, match="found 'CLICK'; send 'click'") as caught:
        parse_event({**POSTED, "event": "CLICK"})
    assert caught.value.column == "event"
    with pytest.raises(DataError, match="found ' view'; send 'view'"):
        parse_event({**POSTED, "type": " view"})
    path = tmp_path / "events.csv"
    path.write_text("user_id,item_id,event\nu,i,Purchase\nu,i, CLICK \nu,i, \n")
    events = load_events(path, known_items={"i"})
    assert [e.event for e in events] == ["purchase", "click", "view"]


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("event_id", "evt-9\n"),
        ("event_id", ""),
        ("event_id", "x" * 129),
        ("list_id", "abc\n"),
        ("list_id", ""),
    ],
)
def test_ids_of_events_and_lists_must_match_their_whole_pattern(column, value):
    """`evt-9\\n` was stored with its newline (a retry as `evt-9` was then a new event), and
    an empty `event_id` passed although the document says 1 to 128 characters."""
    with pytest.raises(DataError, match=f"'{column}' must be") as caught:
        parse_event({**POSTED, column: value})
    assert caught.value.column == column
    assert getattr(parse_event({**POSTED, column: None}), column) is None, "null: none given"


@pytest.mark.parametrize("value", [-1, -0.5, "0001-01-01", "1969-12-31T23:59:59Z"])
def test_a_timestamp_before_1970_is_refused_whether_a_number_or_iso_text(value):
    """-1 was refused ("must be >= 0") but the ISO date 0001-01-01 was taken."""
    with pytest.raises(DataError, match=">= 0") as caught:
        parse_event({**POSTED, "timestamp": value})
    assert caught.value.column == "timestamp"
    assert parse_event({**POSTED, "timestamp": "1970-01-01T00:00:00Z"}).timestamp == 0.0


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


@pytest.mark.parametrize("column", ["user_id", "item_id"])
def test_a_posted_number_id_is_refused_with_the_type_found(column):
    values = {"user_id": "u", "item_id": "i", column: 5}
    with pytest.raises(DataError, match=f"'{column}' must be a string, found number 5; send \"5\""):
        parse_event(values)


def test_a_file_record_may_hold_number_ids_and_extra_columns(tmp_path):
    """JSON/JSONL exports (MovieLens) write ids as numbers; CSV values are always strings."""
    path = tmp_path / "events.jsonl"
    path.write_text('{"user_id": 7, "item_id": 42, "timestamp": 1, "session": "s-1"}\n')
    assert load_events(path, known_items={"42"}) == [Event("7", "42", "view", 1.0)]


@pytest.mark.parametrize(
    ("user_id", "found"),
    [
        ("a\x00b", "U+0000 (a control character)"),
        ("a\tb", "U+0009 (a control character)"),
        ("evil\u202eexe.txt", "U+202E RIGHT-TO-LEFT OVERRIDE"),
        ("a\u2066b", "U+2066 LEFT-TO-RIGHT ISOLATE"),
        ("\u200b", "U+200B ZERO WIDTH SPACE"),
        ("ann\u200d", "U+200D ZERO WIDTH JOINER"),
        ("a\u00a0b", "U+00A0 NO-BREAK SPACE"),
        ("\u3164", "U+3164 HANGUL FILLER"),
        ("a\ue000", "U+E000"),
    ],
)
def test_ids_with_control_format_or_invisible_characters_are_refused(user_id, found):
    with pytest.raises(DataError, match="letters, digits") as caught:
        parse_event({"user_id": user_id, "item_id": "i"})
    assert caught.value.column == "user_id"
    assert found in str(caught.value)
    assert repr(user_id.strip())[1:-1] in str(caught.value)  # shown escaped, as a Python literal


def test_an_id_with_nothing_visible_is_refused():
    with pytest.raises(DataError, match="holds nothing visible; an id is 1 to 128 letters"):
        parse_event({"user_id": "\u0301\u0301", "item_id": "i"})


def test_user_and_item_ids_are_kept_as_given():
    """User histories are keyed by the id as posted (stored so before ids had a rule), and the
    catalog does not normalize its ids: composed and decomposed spellings are two ids."""
    decomposed = parse_event({"user_id": " Jose\u0301 ", "item_id": "cafe\u0301"})
    composed = parse_event({"user_id": "Jos\u00e9", "item_id": "i"})
    assert (decomposed.user_id, composed.user_id) == ("Jose\u0301", "Jos\u00e9")
    assert decomposed.item_id == "cafe\u0301"
    with pytest.raises(DataError, match=r"unknown item_id 'a\\u202eb'"):
        parse_event({"user_id": "u", "item_id": "a\u202eb"}, known_items={"i"})


def test_a_file_keeps_user_ids_the_api_refuses_only_trimmed_and_bounded(tmp_path):
    """An operator's own seed or --events file loads as it did before the API's id rule."""
    path = tmp_path / "events.csv"
    path.write_text(
        "user_id,item_id,event,timestamp\n"
        "ana\u00a0lee,od-001,view,1700000000\n"
        " rene\u0301e ,od-002,click,1700000001\n"
        "zw\u200bid,od-002,view,1700000002\n",
        encoding="utf-8",
    )
    loaded = load_events(path, known_items={"od-001", "od-002"})
    assert [e.user_id for e in loaded] == ["ana\u00a0lee", "rene\u0301e", "zw\u200bid"]
    path.write_text(f"user_id,item_id\n{'u' * 129},od-001\n", encoding="utf-8")
    with pytest.raises(DataError, match="'user_id' is 129 characters; the limit is 128") as caught:
        load_events(path, known_items={"od-001"})
    assert (caught.value.line, caught.value.column) == (2, "user_id")


def test_the_id_length_limit_counts_the_stored_id():
    assert parse_event({"user_id": " " + "u" * 128 + " ", "item_id": "i"}).user_id == "u" * 128
    with pytest.raises(DataError, match="'user_id' is 129 characters; the limit is 128"):
        parse_event({"user_id": "u" * 129, "item_id": "i"})


def test_an_unknown_field_is_refused_naming_the_allowed_ones():
    """A typo such as `evnt` would otherwise record a view instead of the purchase meant."""
    with pytest.raises(DataError, match=r"unknown field\(s\) \['evnt'\]; an event has") as caught:
        parse_event({"user_id": "u", "item_id": "i", "evnt": "purchase"})
    assert caught.value.column == "evnt"
    assert "'event_id', 'item_id'" in str(caught.value)


def test_a_file_with_user_ids_the_api_refuses_loads_them_with_one_warning(tmp_path, caplog):
    """The operator learns which of their users the API will not serve (one line per file,
    with the count, the first refused id's line and finding, and the fix), as for item ids."""
    path = tmp_path / "events.csv"
    path.write_text(
        "user_id,item_id,event,timestamp\n"
        "ok,od-001,view,1700000000\n"
        "ana\u00a0lee,od-001,view,1700000001\n"
        "zw\u200bid,od-002,view,1700000002\n"
        "zw\u200bid,od-001,click,1700000003\n",
        encoding="utf-8",
    )
    with caplog.at_level(logging.WARNING, logger="threefold.apps.recs"):
        loaded = load_events(path, known_items={"od-001", "od-002"})
        load_events(path, known_items={"od-001", "od-002"})  # another load: its own line
    assert [e.user_id for e in loaded] == ["ok", "ana\u00a0lee", "zw\u200bid", "zw\u200bid"]
    assert len(caplog.records) == 2
    warning = caplog.records[0]
    message = warning.getMessage()
    assert message.startswith(f"{path}: 3 event(s) of 2 user_id(s) the id rule refuses")
    assert "line 3: user_id 'ana\\xa0lee' holds U+00A0 NO-BREAK SPACE" in message
    assert "rename those users in the file" in message
    assert warning.fields == {
        "event": "events_file_refused_user_ids",
        "path": str(path),
        "events": 3,
        "users": 2,
    }


def test_a_file_of_allowed_user_ids_loads_without_a_warning(tmp_path, caplog):
    path = tmp_path / "events.csv"
    path.write_text("user_id,item_id\nren\u00e9e,od-001\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="threefold.apps.recs"):
        assert len(load_events(path, known_items={"od-001"})) == 1
    assert caplog.records == []


def test_a_file_with_some_timestamps_blank_is_refused_with_the_count_and_first_line(tmp_path):
    """A blank timestamp once read as 1970: the newest event (i3) became the user's oldest."""
    path = tmp_path / "events.csv"
    path.write_text(
        "user_id,item_id,event,timestamp\n"
        "u1,i1,view,2026-01-05T10:00:00Z\n"
        "u1,i2,view,2026-01-05T11:00:00Z\n"
        "u1,i3,purchase,\n"
    )
    with pytest.raises(DataError, match=r"line 4, column timestamp: 1 of 3 events") as caught:
        load_events(path, known_items={"i1", "i2", "i3"})
    assert "give every event a timestamp" in str(caught.value)


def test_a_file_without_any_timestamps_keeps_its_order(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text("user_id,item_id,timestamp\nu1,i3,\nu1,i1,\nu1,i2,\n")
    events = load_events(path, known_items={"i1", "i2", "i3"})
    assert [e.item_id for e in group_by_user(events)["u1"]] == ["i3", "i1", "i2"]


def test_a_files_blank_list_id_and_event_id_cells_are_left_out(tmp_path):
    """An export with the optional columns mostly empty loads; a posted "" is still a 400."""
    path = tmp_path / "events.csv"
    path.write_text(
        "user_id,item_id,event,timestamp,list_id,event_id\n"
        "u1,i1,click,1700000000,,\n"
        "u1,i2,click,1700000001, ,evt-2\n"
    )
    first, second = load_events(path, known_items={"i1", "i2"})
    assert (first.list_id, first.event_id) == (None, None)
    assert (second.list_id, second.event_id) == (None, "evt-2")
    with pytest.raises(DataError, match="event_id"):
        parse_event({"user_id": "u1", "item_id": "i1", "event_id": ""}, strict=True)
