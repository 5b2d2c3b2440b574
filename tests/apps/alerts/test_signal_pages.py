"""Corrections and verdicts a page at a time, newest first: the stores (in memory and in Redis,
with records a version without the time index stored) and GET /api/corrections, /api/verdicts."""

from __future__ import annotations

import json
from typing import Any

import pytest
from redis.connection import AbstractConnection

from threefold.apps.alerts.config import TOPICS, AlertsConfig
from threefold.apps.alerts.resources import open_resources, open_signal_store
from threefold.apps.alerts.signals import correction_key, make_correction, make_verdict
from threefold.apps.alerts.state.signal_store import InMemorySignalStore

ANA = {"Authorization": "Bearer ana-secret"}


def correction(n: int, at: float | None = None, label: str = "negative") -> dict:
    """A sentiment correction of headline `n`, made at second `at` (default: `n`)."""
    scored = {"id": f"m{n}", "text": f"headline {n}", "sentiment": "neutral", "models": {}}
    return make_correction(
        scored, "sentiment", label, analyst="ana", topic_labels=TOPICS, now=at or n
    )


def verdict(n: int, at: float | None = None, kind: str = "false_alarm") -> dict:
    return make_verdict({"alert_id": f"a{n}"}, kind, analyst="ana", note="", now=at or n)


def texts(records: list[dict]) -> list[str]:
    return [r["text"] for r in records]


@pytest.fixture(params=["memory", "redis"])
def store(request):
    if request.param == "memory":
        return InMemorySignalStore()
    redis_settings = request.getfixturevalue("redis_settings")
    config = AlertsConfig(redis_prefix=request.getfixturevalue("redis_prefix"))
    return open_signal_store(config, redis_settings)


# -- the stores ------------------------------------------------------------------------------


def test_pages_run_newest_first_and_say_where_they_end(store) -> None:
    for n in range(1, 6):
        store.save_correction(correction(n))
    first = store.corrections_page(2)
    assert texts(first.records) == ["headline 5", "headline 4"]
    second = store.corrections_page(2, first.after)
    assert texts(second.records) == ["headline 3", "headline 2"]
    last = store.corrections_page(2, second.after)
    assert texts(last.records) == ["headline 1"] and last.after is None
    exact = store.corrections_page(5)
    assert len(exact.records) == 5 and exact.after is None  # no empty page after the last


def test_records_saved_between_pages_are_neither_repeated_nor_push_one_off(store) -> None:
    for n in range(1, 7):
        store.save_correction(correction(n))
    first = store.corrections_page(3)
    assert texts(first.records) == ["headline 6", "headline 5", "headline 4"]
    store.save_correction(correction(7))  # new
    store.save_correction(correction(5, at=8, label="positive"))  # shown already, corrected again
    rest = store.corrections_page(3, first.after)
    assert texts(rest.records) == ["headline 3", "headline 2", "headline 1"]
    assert rest.after is None
    assert texts(store.corrections_page(2).records) == ["headline 5", "headline 7"]
    assert store.corrections_page(2).records[0]["label"] == "positive"
    assert len(store.corrections()) == 7  # replaced, not added


def test_records_made_in_the_same_millisecond_page_without_a_gap(store) -> None:
    for n in range(1, 5):
        store.save_verdict(verdict(n, at=100.0))
    seen, after = [], None
    for _ in range(4):
        page = store.verdicts_page(1, after)
        seen += [v["alert_id"] for v in page.records]
        after = page.after
    assert sorted(seen) == ["a1", "a2", "a3", "a4"] and after is None


def test_verdicts_page_and_are_picked_by_alert(store) -> None:
    for n in range(1, 4):
        store.save_verdict(verdict(n))
    store.save_verdict(verdict(1, at=9, kind="true_alarm"))  # replaces a1's verdict
    page = store.verdicts_page(10)
    assert [(v["alert_id"], v["verdict"]) for v in page.records] == [
        ("a1", "true_alarm"),
        ("a3", "false_alarm"),
        ("a2", "false_alarm"),
    ]
    assert page.after is None
    assert sorted(v["alert_id"] for v in store.verdicts_of(["a2", "a3", "nope", "a2"])) == [
        "a2",
        "a3",
    ]
    assert store.verdicts_of([]) == []


def test_a_headline_s_corrections_are_read_by_its_text(store) -> None:
    for n in range(1, 4):
        store.save_correction(correction(n))
    topic = make_correction(
        {"id": "m2", "text": "headline 2", "topic": "product", "models": {}},
        "topic",
        "legal",
        analyst="bo",
        topic_labels=TOPICS,
        now=5,
    )
    store.save_correction(topic)
    found = store.corrections_of(["headline 2", "unknown"])
    assert sorted((c["task"], c["text"]) for c in found) == [
        ("sentiment", "headline 2"),
        ("topic", "headline 2"),
    ]


# -- Redis: records stored before the index, bounded reads -------------------------------------


@pytest.fixture
def reply_sizes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of strings in each reply a redis-py connection of this process reads."""
    sizes: list[int] = []
    read_response = AbstractConnection.read_response

    def strings(reply: Any) -> int:
        return sum(strings(r) for r in reply) if isinstance(reply, list) else 1

    def counted(self: AbstractConnection, *args: Any, **kwargs: Any) -> Any:
        reply = read_response(self, *args, **kwargs)
        sizes.append(strings(reply))
        return reply

    monkeypatch.setattr(AbstractConnection, "read_response", counted)
    return sizes


@pytest.mark.integration
def test_records_stored_by_the_version_before_paging_are_paged_and_read_in_chunks(
    redis_settings, redis_prefix, reply_sizes
) -> None:
    stored = 3000
    store = open_signal_store(AlertsConfig(redis_prefix=redis_prefix), redis_settings)
    pipe = store.client.pipeline(transaction=False)
    for n in range(1, stored + 1):  # as the version without an index wrote them: HSET only
        record = correction(n, at=1_000_000 + n)
        key = correction_key("sentiment", record["text"])
        pipe.hset(f"{redis_prefix}corrections", key, json.dumps(record, sort_keys=True))
    pipe.execute()
    store.save_correction(correction(7, at=2_000_000, label="positive"))  # corrected again

    reply_sizes.clear()
    first = store.corrections_page(3)  # indexes the old records first, a chunk at a time
    assert texts(first.records) == ["headline 7", f"headline {stored}", f"headline {stored - 1}"]
    assert max(reply_sizes) < stored
    reply_sizes.clear()
    second = store.corrections_page(3, first.after)
    assert texts(second.records) == [f"headline {stored - n}" for n in (2, 3, 4)]
    # the two counts and the repair flag, and one more than a page tells whether another follows
    assert max(reply_sizes) <= 3 + 3 + 1

    reply_sizes.clear()
    everything = store.corrections()  # retraining's full read: HSCAN chunks, not one reply
    assert len(everything) == stored and everything[-1]["text"] == "headline 7"
    assert [r["at"] for r in everything] == sorted(r["at"] for r in everything)
    assert max(reply_sizes) < stored


# -- Redis: old and new versions saving side by side (a rolling upgrade) -----------------------


@pytest.fixture
def redis_signals(redis_settings, redis_prefix):
    return open_signal_store(AlertsConfig(redis_prefix=redis_prefix), redis_settings)


def old_pod_saves(store, record: dict) -> None:
    """What the version without the time index did: HSET the record, nothing else."""
    field = correction_key(str(record["task"]), str(record["text"]))
    store.client.hset(f"{store.prefix}corrections", field, json.dumps(record, sort_keys=True))


def every_page_after(store, limit: int, after: str | None) -> list[dict]:
    records = []
    while True:
        page = store.corrections_page(limit, after)
        records += page.records
        if page.after is None:
            return records
        after = page.after


def every_page(store, limit: int) -> list[dict]:
    return every_page_after(store, limit, None)


@pytest.mark.integration
@pytest.mark.parametrize("limit", [1, 2, 100])
def test_old_and_new_pods_saving_side_by_side_list_every_record_once(
    redis_signals, limit, reply_sizes
) -> None:
    store = redis_signals
    for n in range(1, 21):
        store.save_correction(correction(n))
    old_pod_saves(store, correction(2, at=30, label="positive"))  # an old pod corrects 2 again
    store.save_correction(correction(2, at=40, label="neutral"))  # then a new pod does
    old_pod_saves(store, correction(21, at=50))  # an old pod corrects a new headline

    listed = every_page(store, limit)
    assert sorted(texts(listed)) == sorted(f"headline {n}" for n in range(1, 22))
    assert texts(listed)[:2] == ["headline 21", "headline 2"]
    assert listed[1]["label"] == "neutral"

    reply_sizes.clear()  # the index is whole again: a page reads a page, not every record
    assert texts(store.corrections_page(3).records) == ["headline 21", "headline 2", "headline 20"]
    assert max(reply_sizes) <= 3 + 3 + 1  # as when no old pod wrote


@pytest.mark.integration
def test_a_record_an_old_pod_replaced_is_listed_once_where_it_now_sorts(redis_signals) -> None:
    store = redis_signals
    for n in range(1, 6):
        store.save_correction(correction(n))
    old_pod_saves(store, correction(2, at=10, label="positive"))  # as many records as positions

    first = store.corrections_page(2)
    assert texts(first.records) == ["headline 5", "headline 4"]
    rest = every_page_after(store, 2, first.after)  # reaches the position 2 had: left out
    assert texts(rest) == ["headline 3", "headline 1"]
    again = every_page(store, 2)  # a new traversal shows it at the front, once
    assert texts(again) == [f"headline {n}" for n in (2, 5, 4, 3, 1)]
    assert again[0]["label"] == "positive"


@pytest.mark.integration
def test_a_new_pod_correcting_an_old_pod_s_new_record_lists_it_once(redis_signals) -> None:
    store = redis_signals
    for n in range(1, 4):
        store.save_correction(correction(n))
    old_pod_saves(store, correction(4, at=10))
    store.save_correction(correction(4, at=11, label="positive"))
    assert texts(every_page(store, 1)) == [f"headline {n}" for n in (4, 3, 2, 1)]


# -- the API ---------------------------------------------------------------------------------


@pytest.fixture
def config(redis_prefix) -> AlertsConfig:
    return AlertsConfig(redis_prefix=redis_prefix, grace_s=0, analyst_tokens="ana:ana-secret")


@pytest.fixture
def resources(config, redis_settings):
    return open_resources(config, redis_settings)


def get(client, url: str) -> tuple[int, dict]:
    response = client.get(url, headers=ANA)
    return response.status_code, response.get_json()


@pytest.mark.integration
def test_the_api_pages_corrections_with_a_cursor(client, resources) -> None:
    for n in range(1, 6):
        resources.signals.save_correction(correction(n))
    status, first = get(client, "/api/corrections?limit=2")
    assert status == 200 and texts(first["corrections"]) == ["headline 5", "headline 4"]
    resources.signals.save_correction(correction(6))  # between pages
    status, second = get(client, f"/api/corrections?limit=2&cursor={first['next_cursor']}")
    assert texts(second["corrections"]) == ["headline 3", "headline 2"]
    status, last = get(client, f"/api/corrections?limit=2&cursor={second['next_cursor']}")
    assert texts(last["corrections"]) == ["headline 1"] and last["next_cursor"] is None


@pytest.mark.integration
def test_a_page_holds_100_by_default_and_at_most_1000(client, resources) -> None:
    for n in range(1, 102):
        resources.signals.save_verdict(verdict(n))
    _, page = get(client, "/api/verdicts")
    assert len(page["verdicts"]) == 100 and page["verdicts"][0]["alert_id"] == "a101"
    _, rest = get(client, f"/api/verdicts?cursor={page['next_cursor']}")
    assert [v["alert_id"] for v in rest["verdicts"]] == ["a1"] and rest["next_cursor"] is None
    _, everything = get(client, "/api/verdicts?limit=1000")
    assert len(everything["verdicts"]) == 101 and everything["next_cursor"] is None


@pytest.mark.integration
@pytest.mark.parametrize("route", ["/api/corrections", "/api/verdicts"])
@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ("limit=0", "limit", "'limit' must be between 1 and 1000, found 0"),
        ("limit=1001", "limit", "'limit' must be between 1 and 1000, found 1001"),
        ("limit=ten", "limit", "'limit' must be an integer"),
        ("cursor=nope", "cursor", "cursor must be the next_cursor of an earlier page"),
        ("cursor=aGVsbG8gd29ybGQ", "cursor", "pass next_cursor as it came"),  # "hello world"
        ("cursor=" + "A" * 3000, "cursor", "or leave cursor out to start from the newest"),
    ],
)
def test_a_bad_limit_or_cursor_is_a_400_saying_what_to_pass(
    client, route, query, field, message
) -> None:
    status, body = get(client, f"{route}?{query}")
    assert status == 400, body
    assert body["field"] == field and message in body["message"]


@pytest.mark.integration
def test_the_dashboard_asks_for_the_verdicts_of_the_alerts_it_shows(client, resources) -> None:
    for n in range(1, 5):
        resources.signals.save_verdict(verdict(n))
    status, body = get(client, "/api/verdicts?alert_id=a1&alert_id=a3&alert_id=unknown")
    assert status == 200 and body["next_cursor"] is None
    assert [v["alert_id"] for v in body["verdicts"]] == ["a3", "a1"]  # newest first
    status, mixed = get(client, "/api/verdicts?alert_id=a1&limit=5")
    assert status == 400 and "pass alert_id alone" in mixed["message"]
    many = "&".join(f"alert_id=a{n}" for n in range(101))
    status, too_many = get(client, f"/api/verdicts?{many}")
    assert (
        status == 400
        and "at most 100 alert_id values per request, found 101" in (too_many["message"])
    )


@pytest.mark.integration
def test_headlines_read_only_their_own_corrections(client, resources, reply_sizes) -> None:
    signals = resources.signals
    signals.record_scored(
        [{"id": f"m{n}", "text": f"headline {n}", "sentiment": "neutral"} for n in (1, 2)]
    )
    for n in range(1, 301):  # a year of corrections of headlines long gone, and of headline 1
        signals.save_correction(correction(n))
    signals.save_correction(correction(2, at=400, label="positive"))
    reply_sizes.clear()
    _, body = get(client, "/api/headlines?limit=2")
    corrected = {h["text"]: h["corrections"]["sentiment"]["label"] for h in body["headlines"]}
    assert corrected == {"headline 1": "negative", "headline 2": "positive"}
    assert max(reply_sizes) <= 2 * 2  # two headlines, two tasks: not every correction
