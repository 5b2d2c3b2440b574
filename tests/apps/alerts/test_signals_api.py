"""Analysts' corrections and alert verdicts through the dashboard API, on the embedded Redis."""

from __future__ import annotations

import hashlib

import pytest

from threefold.apps.alerts.config import AlertsConfig
from threefold.apps.alerts.resources import open_resources
from threefold.apps.alerts.web import create_app
from threefold.streaming.connections import RedisSettings

from .test_web import feed_surge

pytestmark = pytest.mark.integration

ANA = {"Authorization": "Bearer ana-secret"}
SCORED = {
    "id": "m1",
    "text": "Apex Robotics recalls robots",
    "topic": "product",
    "sentiment": "neutral",
    "models": {"topic": "v1", "sentiment": "v3"},
    "event_time": "2024-05-01T08:00:00Z",
    "source": "wire",
}


@pytest.fixture
def config(redis_prefix) -> AlertsConfig:
    return AlertsConfig(redis_prefix=redis_prefix, grace_s=0, analyst_tokens="ana:ana-secret")


@pytest.fixture
def resources(config, redis_settings):
    resources = open_resources(config, redis_settings)
    resources.signals.record_scored([SCORED])
    return resources


def test_recent_headlines_show_predictions_and_model_versions(client) -> None:
    response = client.get("/api/headlines?limit=5")
    assert response.status_code == 200
    digest = hashlib.sha256(SCORED["text"].encode()).hexdigest()
    assert response.get_json()["headlines"] == [{**SCORED, "text_digest": digest}]
    assert response.get_json()["labels"]["sentiment"] == ["negative", "neutral", "positive"]
    assert "legal" in response.get_json()["labels"]["topic"]


def test_an_analyst_corrects_a_headline_with_provenance_and_an_audit_record(
    client, resources
) -> None:
    assert client.get("/api/analyst", headers=ANA).get_json() == {"analyst": "ana"}
    body = {"message_id": "m1", "task": "sentiment", "label": "negative"}
    response = client.post("/api/corrections", json=body, headers=ANA)
    assert response.status_code == 201, response.get_json()
    record = response.get_json()["correction"]
    assert {
        k: record[k] for k in ("message_id", "text", "label", "predicted", "model_version")
    } == {
        "message_id": "m1",
        "text": SCORED["text"],
        "label": "negative",
        "predicted": "neutral",
        "model_version": "v3",
    }
    assert record["analyst"] == "ana" and record["at"].endswith("Z")
    assert client.get("/api/corrections", headers=ANA).get_json()["corrections"] == [record]
    (trail,) = resources.signals.audit_trail()
    assert trail["who"] == "ana" and trail["action"] == "correct_label"
    assert trail["message_id"] == "m1" and trail["model_version"] == "v3"


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"message_id": "m1", "task": "sentiment", "label": "angry"}, 400, "sentiment label must"),
        ({"message_id": "m1", "task": "mood", "label": "negative"}, 400, "task must be one of"),
        ({"message_id": "m1", "task": "topic"}, 400, "missing field 'label'"),
        ({"message_id": 7, "task": "topic", "label": "legal"}, 400, "must be str, found int"),
        ({"message_id": "nope", "task": "topic", "label": "legal"}, 404, "GET /api/headlines"),
    ],
)
def test_bad_corrections_get_a_json_4xx(client, body, status, message) -> None:
    response = client.post("/api/corrections", json=body, headers=ANA)
    assert response.status_code == status
    assert message in response.get_json()["message"]


def test_corrections_need_an_analyst_token(client, config, redis_settings) -> None:
    body = {"message_id": "m1", "task": "sentiment", "label": "negative"}
    missing = client.post("/api/corrections", json=body)
    assert missing.status_code == 401 and "Bearer" in missing.get_json()["message"]
    wrong = client.post("/api/corrections", json=body, headers={"Authorization": "Bearer x"})
    assert wrong.status_code == 403
    unconfigured = AlertsConfig(redis_prefix=config.redis_prefix)
    off = create_app(unconfigured, open_resources(unconfigured, redis_settings)).test_client()
    disabled = off.post("/api/corrections", json=body, headers=ANA)
    assert disabled.status_code == 503
    assert "THREEFOLD_ALERTS_ANALYST_TOKENS" in disabled.get_json()["message"]


def test_an_analyst_marks_an_alert_a_false_alarm(client, config, resources) -> None:
    (alert, *_) = feed_surge(config, resources.store)
    url = f"/api/alerts/{alert['alert_id']}/verdict"
    response = client.post(url, json={"verdict": "false_alarm", "note": "old news"}, headers=ANA)
    assert response.status_code == 201, response.get_json()
    verdict = response.get_json()["verdict"]
    assert verdict["verdict"] == "false_alarm" and verdict["key"] == alert["key"]
    assert verdict["analyst"] == "ana" and verdict["note"] == "old news"
    assert client.get("/api/verdicts", headers=ANA).get_json()["verdicts"] == [verdict]
    assert resources.signals.audit_trail()[0]["action"] == "judge_alert"
    bad = client.post(url, json={"verdict": "maybe"}, headers=ANA)
    assert bad.status_code == 400 and bad.get_json()["field"] == "verdict"
    unknown = client.post("/api/alerts/nope/verdict", json={"verdict": "true_alarm"}, headers=ANA)
    assert unknown.status_code == 404


def test_without_redis_signals_answer_503_with_retry_after(config) -> None:
    client = create_app(config, open_resources(config, RedisSettings(url=None))).test_client()
    for response in (
        client.get("/api/headlines"),
        client.post(
            "/api/corrections",
            json={"message_id": "m1", "task": "sentiment", "label": "negative"},
            headers=ANA,
        ),
    ):
        assert response.status_code == 503
        assert response.headers["Retry-After"]
        assert "REDIS_URL" in response.get_json()["message"]


def test_a_redis_that_refuses_writes_is_503_not_500(config, hung_redis) -> None:
    """OOM (maxmemory reached), READONLY after a failover, MISCONF: Redis answers, with an error."""
    import redis

    settings = RedisSettings(url=hung_redis.url)
    resources = open_resources(config, settings)
    resources.signals.record_scored([SCORED])
    client = create_app(config, resources).test_client()
    admin = redis.Redis.from_url(hung_redis.url)
    admin.config_set("maxmemory-policy", "noeviction")
    admin.config_set("maxmemory", 1)
    try:
        body = {"message_id": "m1", "task": "sentiment", "label": "negative"}
        response = client.post("/api/corrections", json=body, headers=ANA)
    finally:
        admin.config_set("maxmemory", 0)
        admin.close()
    assert response.status_code == 503, response.get_json()
    assert response.headers["Retry-After"]
    assert "OOM" in response.get_json()["message"] or "maxmemory" in response.get_json()["message"]


def _shown(client, headers: dict | None = None) -> list[dict]:
    return client.get("/api/headlines?limit=20", headers=headers or {}).get_json()["headlines"]


def test_a_correction_lands_on_the_headline_shown_not_another_with_its_id(
    client, resources
) -> None:
    """Producers' ids are not unique: the digest of the text shown picks the headline."""
    other = {**SCORED, "text": "Apex Robotics wins record contract", "source": "spoof"}
    resources.signals.record_scored([other])  # newer, same id "m1"
    shown = next(h for h in _shown(client) if h["text"] == SCORED["text"])
    body = {"message_id": "m1", "task": "sentiment", "label": "negative"}
    response = client.post(
        "/api/corrections", json={**body, "text_digest": shown["text_digest"]}, headers=ANA
    )
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["correction"]["text"] == SCORED["text"]
    ambiguous = client.post("/api/corrections", json=body, headers=ANA)
    assert ambiguous.status_code == 409
    assert ambiguous.get_json()["error"] == "ambiguous_message_id"
    gone = hashlib.sha256(b"a headline no longer kept").hexdigest()
    stale = client.post("/api/corrections", json={**body, "text_digest": gone}, headers=ANA)
    assert stale.status_code == 409 and stale.get_json()["error"] == "headline_mismatch"
    bad = client.post("/api/corrections", json={**body, "text_digest": "XYZ"}, headers=ANA)
    assert bad.status_code == 400 and bad.get_json()["field"] == "text_digest"
    corrections = client.get("/api/corrections", headers=ANA).get_json()["corrections"]
    assert [c["text"] for c in corrections] == [SCORED["text"]]


def test_signed_in_analysts_see_the_stored_corrections_with_each_headline(client) -> None:
    (shown,) = _shown(client)
    for task, label in (("sentiment", "negative"), ("sentiment", "positive"), ("topic", "legal")):
        body = {"message_id": "m1", "text_digest": shown["text_digest"], "task": task}
        saved = client.post("/api/corrections", json={**body, "label": label}, headers=ANA)
        assert saved.status_code == 201
    (seen,) = _shown(client, ANA)
    assert {task: c["label"] for task, c in seen["corrections"].items()} == {
        "sentiment": "positive",  # the latest wins
        "topic": "legal",
    }
    assert seen["corrections"]["topic"]["analyst"] == "ana"
    assert "corrections" not in _shown(client)[0]  # analysts' names only for analysts
    assert "corrections" not in _shown(client, {"Authorization": "Bearer x"})[0]
