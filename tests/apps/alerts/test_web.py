"""Dashboard JSON endpoints and the live alert feed (SSE) on the real embedded Redis."""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.request

import pytest
from support.alerts_setup import NeutralScorer, alerts_test_config, heartbeat
from support.runner_threads import RunnerThreads
from support.services import frozen

from threefold.apps.alerts.config import AlertsConfig
from threefold.apps.alerts.consumer import build_runner
from threefold.apps.alerts.pipeline import AlertPipeline
from threefold.apps.alerts.resources import Resources, open_resources
from threefold.apps.alerts.state.redis_store import RedisStateStore
from threefold.apps.alerts.web import create_app
from threefold.apps.alerts.web.api import MAX_KEY_CHARS
from threefold.streaming.connections import RedisSettings

from .conftest import T0, calm_then_surge, make_scored

pytestmark = pytest.mark.integration


@pytest.fixture
def store(redis_store) -> RedisStateStore:
    return redis_store


def feed_surge(config: AlertsConfig, store: RedisStateStore) -> list[dict]:
    """Run the calm-then-surge stream through the pipeline; publish (acknowledge) its alerts."""
    pipeline = AlertPipeline.from_config(config, store)
    items = calm_then_surge()
    for i in range(0, len(items), 20):
        pipeline.process(items[i : i + 20])
    alerts = store.pending_alerts()
    store.ack_alerts(alerts)
    return alerts


def test_healthz_and_metrics(client, store):
    store.write_heartbeat("host:7:0123abcd", heartbeat(written_ago_s=2, polled_ago_s=1))
    health = client.get("/healthz")
    assert health.status_code == 200
    body = health.get_json()
    (listed,) = body.pop("consumers")
    assert body == {"status": "ok", "redis": "ok", "alerts_consumer": "running"}
    assert (listed["consumer"], listed["state"]) == ("host:7:0123abcd", "running")
    assert listed["written_s_ago"] >= 2 and listed["last_poll_s_ago"] >= 1
    client.get("/api/keys")
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'http_requests_total{endpoint="/api/keys"' in metrics


def test_healthz_without_a_consumer_is_degraded_and_says_to_start_one(client, config):
    """Redis answers, but no consumer wrote a heartbeat: nothing moves on the dashboard."""
    health = client.get("/healthz")
    assert health.status_code == 503
    body = health.get_json()
    assert body["status"] == "degraded" and body["redis"] == "ok"
    assert body["alerts_consumer"] == "none" and body["consumers"] == []
    assert f"the Redis hash {config.redis_prefix}consumers is empty" in body["reason"]
    assert "Fix: start one (`threefold alerts run`)" in body["reason"]


DOWN_90_S = {"down_ago_s": 90, "retries": 4}  # an outage 90 s old, 4 retries so far


def _beat(state: str = "running", *, down_ago_s: float | None = None, **fields) -> dict:
    """A heartbeat written now (`down_ago_s`: an outage that began that long ago)."""
    if down_ago_s is not None:
        fields["down_since"] = time.time() - down_ago_s
    return heartbeat(state, **fields)


@pytest.mark.parametrize(
    ("beat", "shown", "says"),
    [
        ({"written_ago_s": 40}, "none", "no alerts consumer has written a heartbeat for 4"),
        (
            {"written_ago_s": 1, "polled_ago_s": 50},
            "stuck",
            "writes heartbeats but has not polled Kafka for 5",
        ),
        (
            {"state": "dependency_down", **DOWN_90_S, "reason": "Redis state store failed: x"},
            "dependency_down",
            "says its Redis is down or too slow since ",
        ),
        (
            {"state": "kafka_down", **DOWN_90_S, "reason": "NoBrokersAvailable"},
            "kafka_down",
            "says Kafka is down since ",
        ),
        (
            {"state": "stopped", "reason": "DependencyRefused: WRONGPASS"},
            "stopped",
            "stopped (DependencyRefused: WRONGPASS). Fix: start one (`threefold alerts run`)",
        ),
        ({"state": "starting", "polled_ago_s": None}, "starting", "is starting"),
    ],
    ids=["silent", "stuck", "redis-down", "kafka-down", "stopped", "starting"],
)
def test_healthz_is_degraded_with_the_reason_while_no_consumer_runs(
    client, store, beat, shown, says
):
    store.write_heartbeat("host:7:0123abcd", _beat(**beat))
    health = client.get("/healthz")
    assert health.status_code == 503
    body = health.get_json()
    assert (body["status"], body["redis"], body["alerts_consumer"]) == ("degraded", "ok", shown)
    assert says in body["reason"]
    if "down_ago_s" in beat:
        assert re.search(r"\(9\d s ago; 4 retries\): " + re.escape(beat["reason"]), body["reason"])
    (listed,) = body["consumers"]
    assert listed["consumer"] == "host:7:0123abcd"


def test_healthz_is_ok_while_one_of_the_consumers_runs(client, store):
    store.write_heartbeat("a:1:0", _beat("kafka_down", **DOWN_90_S, reason="broker gone"))
    store.write_heartbeat("b:2:0", _beat(written_ago_s=1, polled_ago_s=1))
    store.write_heartbeat("c:3:0", _beat(written_ago_s=1, polled_ago_s=50))
    body = client.get("/healthz").get_json()
    assert body["status"] == "ok" and body["alerts_consumer"] == "running"
    states = {each["consumer"]: each["state"] for each in body["consumers"]}
    assert states == {"a:1:0": "kafka_down", "b:2:0": "running", "c:3:0": "stuck"}


def test_healthz_follows_a_real_consumer_from_running_to_stopped(
    kafka_bootstrap, redis_settings, redis_prefix, unique_name
):
    """The consumer's own heartbeats on the embedded broker and Redis: ok while it runs, 503
    "stopped" once it has stopped."""
    config = alerts_test_config(
        kafka_bootstrap, redis_prefix, unique_name, input_partitions=1, max_wait_ms=50
    )
    runner, processor = build_runner(config, redis_settings, scorer=NeutralScorer())
    dashboard = create_app(config, open_resources(config, redis_settings)).test_client()
    running = RunnerThreads(safety_s=60)
    try:
        running.start(runner)
        running.wait_for(lambda: dashboard.get("/healthz").status_code == 200, "a running beat")
        body = dashboard.get("/healthz").get_json()
        assert [(c["consumer"], c["state"]) for c in body["consumers"]] == [
            (processor.consumer_id, "running")
        ]
    finally:
        running.stop_all()
        processor.publisher.close()
    assert not running.errors
    stopped = dashboard.get("/healthz")
    assert stopped.status_code == 503
    assert stopped.get_json()["alerts_consumer"] == "stopped"
    assert f"alerts consumer {processor.consumer_id} stopped" in stopped.get_json()["reason"]


def test_keys_series_and_alerts(client, config, store):
    published = feed_surge(config, store)
    keys = client.get("/api/keys").get_json()["keys"]
    assert {"key": "entity:QNTV", "kind": "entity", "name": "QNTV"} in keys
    series = client.get("/api/series?key=entity:QNTV").get_json()["series"]
    (quantive,) = series
    closed = [w for w in quantive["windows"] if not w["open"]]
    opened = [w for w in quantive["windows"] if w["open"]]
    assert [w["negative_share"] for w in closed] == [0.1, 0.1, 0.1, 0.1]
    assert opened and opened[-1]["negative"] == 16
    by_kind = client.get("/api/series?kind=topic").get_json()["series"]
    assert [s["key"] for s in by_kind] == ["topic:legal"]
    alerts = client.get("/api/alerts?limit=10").get_json()["alerts"]
    assert {a["alert_id"] for a in alerts} == {a["alert_id"] for a in published}
    assert all("event_id" in a for a in alerts)


def test_keys_and_series_come_a_page_at_a_time(client, config, store):
    names = [f"CO{i:03d}" for i in range(120)]
    AlertPipeline.from_config(config, store).process(
        [make_scored("many", T0, "neutral", entities=names)]
    )
    first = client.get("/api/keys?limit=50").get_json()
    assert (len(first["keys"]), first["total"], first["next_offset"]) == (50, 121, 50)
    last = client.get("/api/keys?limit=50&offset=100").get_json()
    assert (len(last["keys"]), last["next_offset"]) == (21, None)
    every = first["keys"] + client.get("/api/keys?limit=50&offset=50").get_json()["keys"]
    assert len({k["key"] for k in every + last["keys"]}) == 121
    series = client.get("/api/series?kind=entity&limit=5").get_json()
    assert (len(series["series"]), series["total"], series["next_offset"]) == (50, 120, 50)
    wide = client.get("/api/series?kind=entity&limit=5&keys=200").get_json()
    assert (len(wide["series"]), wide["next_offset"]) == (120, None)
    assert client.get("/api/series?kind=entity&keys=201").status_code == 400
    assert client.get("/api/keys?limit=5001").status_code == 400


@pytest.mark.parametrize(
    "query",
    [
        "/api/series",
        "/api/series?key=a&kind=topic",
        "/api/series?kind=sector",
        "/api/alerts?limit=x",
    ],
)
def test_bad_parameters_are_json_400s(client, query):
    response = client.get(query)
    assert response.status_code == 400
    assert response.is_json and response.get_json()["message"]


def test_page_escapes_nothing_itself_and_loads_local_assets_only(client):
    page = client.get("/").get_data(as_text=True)
    assert 'src="/static/dashboard.js"' in page
    assert "http://" not in page and "https://" not in page
    script = client.get("/static/dashboard.js").get_data(as_text=True)
    assert "innerHTML" not in script  # every server-provided string goes in via textContent


def test_no_redis_url_serves_pages_and_answers_the_api_with_503_and_the_fix():
    config = AlertsConfig()
    client = create_app(config, open_resources(config, RedisSettings(url=None))).test_client()
    assert client.get("/").status_code == 200
    health = client.get("/healthz")
    assert health.status_code == 503
    assert health.get_json()["status"] == "degraded"
    assert health.get_json()["redis"] == "not configured"
    assert "set REDIS_URL" in health.get_json()["reason"]
    for path in ("/api/keys", "/api/series?kind=topic", "/api/alerts", "/api/alerts/stream"):
        response = client.get(path)
        assert response.status_code == 503
        assert response.headers["Retry-After"]
        assert response.is_json and "set REDIS_URL" in response.get_json()["message"]


def test_redis_down_is_degraded_and_the_api_answers_503():
    config = AlertsConfig()
    down = RedisSettings(url="redis://127.0.0.1:1/0")
    client = create_app(config, open_resources(config, down)).test_client()
    health = client.get("/healthz")
    assert health.status_code == 503
    body = health.get_json()
    assert (body["status"], body["redis"]) == ("degraded", "unreachable")
    assert "127.0.0.1:1" in body["reason"] and "does not answer" in body["reason"]
    assert "REDIS_URL" in body["reason"]  # what to check
    response = client.get("/api/keys")
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert response.get_json()["redis"] == "unreachable"


def test_live_feed_streams_new_alerts_over_sse(config, resources, store, live_server):
    base = live_server(create_app(config, resources))
    received: list[str] = []

    def listen() -> None:
        with urllib.request.urlopen(base + "/api/alerts/stream?timeout=20", timeout=30) as stream:
            for raw in stream:
                line = raw.decode("utf-8").rstrip("\n")
                received.append(line)
                if line.startswith("data: "):
                    return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    deadline = time.monotonic() + 10
    while not received and time.monotonic() < deadline:
        time.sleep(0.05)
    assert received and received[0] == "retry: 2000"
    published = feed_surge(config, store)  # alerts published after the client connected
    listener.join(25)
    assert any(line == "event: alert" for line in received)
    ids = [line for line in received if line.startswith("id: ")]
    data = [json.loads(line[6:]) for line in received if line.startswith("data: ")]
    assert ids and data[0]["alert_id"] in {a["alert_id"] for a in published}


def test_sse_replays_after_last_event_id(client, config, store):
    feed_surge(config, store)
    events = store.recent_alerts(10)
    oldest_id = events[-1][0]
    response = client.get(
        "/api/alerts/stream?timeout=1", headers={"Last-Event-ID": oldest_id}, buffered=True
    )
    body = response.get_data(as_text=True)
    replayed = [json.loads(line[6:]) for line in body.splitlines() if line.startswith("data: ")]
    assert [a.get("alert_id") for a in replayed[:-1]] == [a["alert_id"] for _, a in events[-2::-1]]
    assert replayed[-1] == {"resume_from": events[0][0]}  # the stream's `end` event


def test_bad_last_event_id_is_rejected(client):
    response = client.get("/api/alerts/stream", headers={"Last-Event-ID": "<script>"})
    assert response.status_code == 400


def test_pipeline_items_for_unknown_key_show_empty_series(client):
    assert client.get("/api/series?key=entity:NOPE").get_json()["series"][0]["windows"] == []


@pytest.mark.parametrize(
    "key",
    [
        "../../etc/passwd",
        "%00",
        "x%0Ay",
        "topic:x%0Ay",
        "entity:%00",
        "topic:",
        "sector:legal",
        "topic:" + "x" * MAX_KEY_CHARS,
        "x" * 10_000,
    ],
)
def test_a_malformed_series_key_is_a_400_that_shows_it_cut_short(client, key):
    response = client.get(f"/api/series?key={key}")
    assert response.status_code == 400
    body = response.get_json()
    assert body["field"] == "key"
    assert body["message"].startswith("key must be topic:NAME or entity:NAME")
    assert "found" in body["message"]
    assert len(response.get_data()) < 500  # never the whole key echoed back


def test_a_long_kind_is_not_echoed_back_whole(client):
    response = client.get("/api/series?kind=" + "k" * 10_000)
    assert response.status_code == 400
    assert len(response.get_data()) < 500


@pytest.mark.parametrize("headers", [{}, {"Last-Event-ID": "0-0"}])
def test_the_live_feed_answers_503_json_before_streaming_when_redis_is_down(headers):
    config = AlertsConfig()
    down = RedisSettings(url="redis://127.0.0.1:1/0")
    client = create_app(config, open_resources(config, down)).test_client()
    response = client.get("/api/alerts/stream", headers=headers)
    assert response.status_code == 503
    assert response.is_json and response.get_json()["redis"] == "unreachable"
    assert response.headers["Retry-After"]


def _listen(url: str, lines: list[str], done: threading.Event) -> None:
    """Append each line of the event stream at `url` until `done` is set or it ends."""
    with urllib.request.urlopen(url, timeout=60) as stream:
        for raw in stream:
            lines.append(raw.decode("utf-8").rstrip("\n"))
            if done.is_set():
                return


def _wait_for(condition, what: str, limit_s: float = 30.0) -> None:
    deadline = time.monotonic() + limit_s  # a safety net, not an assertion on timing
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


@pytest.mark.slow
def test_live_feed_says_redis_is_away_then_streams_again_once_it_is_back(
    hung_redis, redis_prefix, live_server
) -> None:
    """The dashboard's own Redis client (default socket timeout): a comment while Redis is
    frozen, then alerts and keepalives again, not one "redis unavailable" after it is back."""
    config = AlertsConfig(redis_prefix=redis_prefix, grace_s=0)
    resources = open_resources(config, RedisSettings(url=hung_redis.url))
    base = live_server(create_app(config, resources))
    lines: list[str] = []
    done = threading.Event()
    listener = threading.Thread(
        target=_listen, args=(base + "/api/alerts/stream?timeout=120", lines, done), daemon=True
    )
    listener.start()
    try:
        _wait_for(lambda: "retry: 2000" in lines, "the stream to open")
        with frozen(hung_redis):
            _wait_for(lambda: any("redis unavailable" in line for line in lines), "the comment")
        back = len(lines)
        store = resources.store
        assert isinstance(store, RedisStateStore)
        published = feed_surge(config, store)
        _wait_for(lambda: "event: alert" in lines[back:], "an alert after Redis came back")
        alert_at = lines.index("event: alert", back)
        _wait_for(lambda: ": keepalive" in lines[alert_at:], "a keepalive after the alert")
        after = lines[back:]
    finally:
        done.set()
        listener.join(30)
    data = [json.loads(line[6:]) for line in after if line.startswith("data: ")]
    assert data[0]["alert_id"] in {a["alert_id"] for a in published}
    assert not any("redis unavailable" in line for line in lines[alert_at:])


@pytest.mark.slow
def test_live_feed_outlives_the_redis_socket_timeout(config, redis_settings, store) -> None:
    """XREAD blocks below the client's socket timeout: keepalives, never a dropped feed."""
    from threefold.apps.alerts.state.redis_store import RedisStateStore
    from threefold.streaming.connections import redis_client

    client = redis_client(redis_settings, decode_responses=True, socket_timeout=1.0)
    short_timeout = Resources(settings=config, store=RedisStateStore(client, config.redis_prefix))
    app = create_app(config, short_timeout).test_client()
    started = time.monotonic()
    body = app.get("/api/alerts/stream?timeout=4", buffered=True).get_data(as_text=True)
    assert time.monotonic() - started >= 3.5
    assert body.count(": keepalive") >= 4  # one per half socket timeout
    assert "redis unavailable" not in body


def test_dashboard_api_is_rate_limited_by_default(redis_prefix, redis_settings) -> None:
    assert AlertsConfig().rate_limit_per_minute  # on by default
    limited = AlertsConfig(redis_prefix=redis_prefix, rate_limit_per_minute=4)
    client = create_app(limited, open_resources(limited, redis_settings)).test_client()
    statuses = [client.get("/api/keys").status_code for _ in range(3)]
    assert statuses == [200, 429, 429]  # burst 1 (4 per minute // 4)
    assert int(client.get("/api/keys").headers["Retry-After"]) >= 1


def test_behind_a_trusted_proxy_each_viewer_has_their_own_rate_limit(
    redis_prefix, redis_settings, monkeypatch
) -> None:
    monkeypatch.setenv("THREEFOLD_ALERTS_TRUSTED_PROXIES", "1")
    limited = AlertsConfig.from_env(redis_prefix=redis_prefix, rate_limit_per_minute=4)
    assert limited.trusted_proxies == 1
    client = create_app(limited, open_resources(limited, redis_settings)).test_client()
    one, two = ({"X-Forwarded-For": address} for address in ("198.51.100.1", "198.51.100.2"))
    assert [client.get("/api/keys", headers=one).status_code for _ in range(2)] == [200, 429]
    assert client.get("/api/keys", headers=two).status_code == 200
