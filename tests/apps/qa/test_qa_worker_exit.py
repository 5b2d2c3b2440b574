"""A stopping worker tries once more to write the records it kept during a Redis outage: under
gunicorn (which never calls `Resources.close`) as under `threefold serve qa`."""

from __future__ import annotations

import gc
import json
import signal
import time
import urllib.request
import weakref
from pathlib import Path

import pytest
import redis
from support.services import frozen

from threefold.apps.qa.config import QAConfig
from threefold.apps.qa.resources import open_resources
from threefold.apps.qa.web import create_app
from threefold.streaming.connections import RedisSettings

# The background flush tries at once, then 1, 2 and 4 s after each failed try (each one
# failing after the 0.3 s Redis timeout): by then it waits 8 s before the next one.
REDIS_TIMEOUT_S = "0.3"
FLUSH_WAITING_AFTER_S = 10.5


def post_chat(base: str, message: str) -> dict:
    request = urllib.request.Request(
        f"{base}/api/chat",
        data=json.dumps({"message": message}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.mark.integration
@pytest.mark.slow
def test_a_gunicorn_worker_stopped_with_sigterm_writes_the_records_it_kept(
    gunicorn_qa, hung_redis, redis_prefix: str
) -> None:
    base, process = gunicorn_qa(
        REDIS_URL=hung_redis.url,
        THREEFOLD_QA_REDIS_TIMEOUT_S=REDIS_TIMEOUT_S,
        WEB_CONCURRENCY="1",
        GUNICORN_THREADS="2",
    )
    with frozen(hung_redis):
        declined = post_chat(base, "what is the airspeed of an unladen swallow")
        assert declined["degraded"] == "redis unavailable"
        assert declined["outcome"] == "out_of_scope"  # an unanswered question, kept
        time.sleep(FLUSH_WAITING_AFTER_S)  # the background flush waits, its next try far off
    process.send_signal(signal.SIGTERM)  # Redis answers again: e.g. a rolling update
    assert process.wait(timeout=60) == 0
    client = redis.Redis.from_url(hung_redis.url)
    try:
        unanswered = [json.loads(r) for r in client.lrange(redis_prefix + "unanswered", 0, -1)]
    finally:
        client.close()
    assert [r["session_id"] for r in unanswered] == [declined["session_id"]], process.stderr.read()


@pytest.mark.integration
def test_closed_resources_are_not_held_until_the_process_exits(
    bot_dir: Path, redis_url: str, redis_prefix: str, embedder
) -> None:
    """Started resources run `close` at exit; once closed, nothing holds them (tests and
    reloads that open many apps do not pile them up)."""
    settings = QAConfig(
        bot_dir=str(bot_dir), kb_path=None, redis_prefix=redis_prefix, rate_limit_per_minute=None
    )
    resources = open_resources(settings, RedisSettings(url=redis_url), encoder=embedder)
    create_app(settings, resources)
    assert resources.flusher is not None and resources.flusher.running
    resources.close()
    assert not resources.flusher.running
    closed = weakref.ref(resources)
    del resources
    gc.collect()
    assert closed() is None
