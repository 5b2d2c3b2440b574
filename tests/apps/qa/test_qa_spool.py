"""Records of a Redis outage wait in a spool on disk: they outlive the worker that kept them."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import redis
from prometheus_client import CollectorRegistry
from support.servers import free_port, wait_until_serving
from support.services import frozen

from threefold.apps.qa.fallback import (
    FallbackRecordLog,
    KeptRecord,
    RedisFallback,
    spool_file_name,
)
from threefold.apps.qa.feedback import MemoryRecordLog
from threefold.apps.qa.metrics import QAMetrics
from threefold.apps.qa.redis_feedback import RedisRecordLog
from threefold.streaming.record_spool import RecordSpool
from threefold.streaming.write_ids import new_write_id

REDIS_TIMEOUT_S = "0.3"


def post(base: str, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        f"{base}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, json.loads(response.read())


def stored(url: str, key: str) -> list[dict[str, Any]]:
    client = redis.Redis.from_url(url)
    try:
        return [json.loads(raw) for raw in client.lrange(key, 0, -1)]
    finally:
        client.close()


def spool_of(spool_dir: Path, redis_prefix: str, **options: Any) -> RecordSpool:
    return RecordSpool(
        spool_dir, file_name=spool_file_name(redis_prefix), record_type=KeptRecord, **options
    )


@pytest.mark.integration
@pytest.mark.slow
def test_feedback_kept_by_a_killed_worker_reaches_redis_once_from_the_next_workers(
    gunicorn_qa, hung_redis, bot_dir: Path, redis_prefix: str, spool_dir: Path, tmp_path: Path
) -> None:
    """A worker takes a vote and a declined question while Redis does not answer, and is
    SIGKILLed (an OOM kill: no atexit, no last flush). Redis comes back; two new workers start
    at once, each replaying the spool at its start: each record reaches Redis exactly once."""
    port = free_port()
    log_path = tmp_path / "killed-worker.log"
    environment = {
        **os.environ,
        "REDIS_URL": hung_redis.url,
        "THREEFOLD_QA_BOT_DIR": str(bot_dir),
        "THREEFOLD_QA_REDIS_PREFIX": redis_prefix,
        "THREEFOLD_QA_SPOOL_DIR": str(spool_dir),
        "THREEFOLD_QA_REDIS_TIMEOUT_S": REDIS_TIMEOUT_S,
        "THREEFOLD_QA_RATE_LIMIT_PER_MINUTE": "0",
    }
    threefold = Path(sys.executable).with_name("threefold")
    with log_path.open("w", encoding="utf-8") as log:
        worker = subprocess.Popen(
            [str(threefold), "serve", "qa", "--port", str(port)],
            env=environment,
            stdout=log,
            stderr=log,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(worker, f"{base}/healthz", timeout_s=180, poll_s=0.5)
        with frozen(hung_redis):
            _, answer = post(base, "/api/chat", {"message": "Is shipping free?"})
            assert answer["degraded"] == "redis unavailable"
            assert answer["outcome"] == "answer"
            status, _ = post(
                base,
                "/api/feedback",
                {"session_id": answer["session_id"], "turn_id": answer["turn_id"], "rating": "up"},
            )
            assert status == 201
            _, declined = post(
                base, "/api/chat", {"message": "what is the airspeed of an unladen swallow"}
            )
            assert declined["outcome"] == "out_of_scope"
            worker.send_signal(signal.SIGKILL)
            assert worker.wait(timeout=30) == -signal.SIGKILL
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(timeout=30)
    assert stored(hung_redis.url, redis_prefix + "feedback") == []  # nothing reached Redis yet

    base, server = gunicorn_qa(
        REDIS_URL=hung_redis.url, WEB_CONCURRENCY="2", THREEFOLD_QA_REDIS_TIMEOUT_S="2"
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (
        stored(hung_redis.url, redis_prefix + "feedback")
        and stored(hung_redis.url, redis_prefix + "unanswered")
    ):
        time.sleep(0.2)
    server.send_signal(signal.SIGTERM)  # both workers stop: every flush they started is over
    assert server.wait(timeout=60) == 0
    feedback = stored(hung_redis.url, redis_prefix + "feedback")
    unanswered = stored(hung_redis.url, redis_prefix + "unanswered")
    logs = log_path.read_text(encoding="utf-8")[-2000:]
    assert [(r["turn_id"], r["rating"]) for r in feedback] == [(answer["turn_id"], "up")], logs
    assert [r["session_id"] for r in unanswered] == [declined["session_id"]]
    assert spool_of(spool_dir, redis_prefix).count() == 0


@pytest.mark.integration
def test_a_record_torn_by_a_kill_is_skipped_with_a_log_line_and_the_rest_replayed(
    redis_client, redis_prefix: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The worker was killed while writing its third record: the next worker writes the two
    whole ones, in order, sets the torn one aside and logs it, and goes on."""
    kept = [KeptRecord("feedback", {"n": n}) for n in (1, 2)]
    spool_of(tmp_path, redis_prefix).append(kept)
    spool = spool_of(tmp_path, redis_prefix)
    with spool.path.open("a", encoding="utf-8") as handle:
        handle.write('{"log": "feedback", "record": {"n": 3')  # the kill, mid-write
    log = FallbackRecordLog(
        RedisRecordLog(redis_client, prefix=redis_prefix),
        MemoryRecordLog(),
        RedisFallback(),
        spool=spool,
    )
    assert log.pending() == 3
    with caplog.at_level(logging.ERROR):
        assert log.flush() == 2
    assert [r["n"] for r in RedisRecordLog(redis_client, prefix=redis_prefix).read("feedback")] == [
        1,
        2,
    ]
    assert "1 unreadable line(s)" in caplog.text
    assert log.pending() == 0
    log.append("feedback", {"n": 4})  # Redis answers: written at once, nothing left behind
    assert [r["n"] for r in RedisRecordLog(redis_client, prefix=redis_prefix).read("feedback")] == [
        1,
        2,
        4,
    ]


@pytest.mark.integration
def test_a_full_spool_keeps_new_records_in_memory_says_so_and_keeps_their_order(
    hung_redis, redis_prefix: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    client = redis.Redis.from_url(hung_redis.url, socket_timeout=0.3)
    one_record = len(json.dumps(KeptRecord("feedback", {"n": 1}, new_write_id()).to_dict())) + 1
    registry = CollectorRegistry()
    log = FallbackRecordLog(
        RedisRecordLog(client, prefix=redis_prefix),
        MemoryRecordLog(),
        RedisFallback(retry_s=60),
        spool=spool_of(tmp_path, redis_prefix, max_bytes=3 * one_record),
    )
    log.on_spool_refused.append(QAMetrics(registry).observe_spool_refused)
    try:
        with frozen(hung_redis), caplog.at_level(logging.ERROR):
            log.append("feedback", {"n": 1})
            log.append("feedback", {"n": 2})
            log.append("feedback", {"n": 30})  # one byte too many: refused, kept in memory
            log.append("feedback", {"n": 4})  # would fit, but must not overtake 30
        assert (log.spooled(), log.in_memory()) == (2, 2)
        refused = registry.get_sample_value("qa_records_spool_refused_total", {"reason": "full"})
        assert refused == 1
        assert "refused a record (spool full: " in caplog.text
        assert log.flush() == 4
        stored_ns = [r["n"] for r in RedisRecordLog(client, prefix=redis_prefix).read("feedback")]
    finally:
        client.close()
    assert stored_ns == [1, 2, 30, 4]
    assert log.pending() == 0


@pytest.mark.integration
def test_a_record_redis_refuses_is_set_aside_and_the_others_reach_redis_once(
    redis_client, redis_prefix: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Another app left a string at `<prefix>unanswered`: Redis refuses the unanswered record
    on its data (WRONGTYPE) whatever the retry. It goes to `<spool>.rejected` with the reason,
    logged and counted; the feedback spooled before and after it reaches Redis, in order, once,
    and the spool is empty. Before, every flush failed and kept the whole spool, for ever."""
    redis_client.set(redis_prefix + "unanswered", "not a list")
    spool = spool_of(tmp_path, redis_prefix)
    spool.append(
        [
            KeptRecord("feedback", {"n": 1}),
            KeptRecord("unanswered", {"question": "huh?"}),
            KeptRecord("feedback", {"n": 2}),
            KeptRecord("feedback", {"n": 3}),
        ]
    )
    registry = CollectorRegistry()
    log = FallbackRecordLog(
        RedisRecordLog(redis_client, prefix=redis_prefix),
        MemoryRecordLog(),
        RedisFallback(),
        spool=spool,
    )
    log.on_rejected.append(QAMetrics(registry).observe_record_rejected)
    with caplog.at_level(logging.ERROR):
        assert log.flush() == 3
    assert [r["n"] for r in RedisRecordLog(redis_client, prefix=redis_prefix).read("feedback")] == [
        1,
        2,
        3,
    ]
    assert log.pending() == 0
    [rejected] = [json.loads(line) for line in spool.rejected_path.read_text().splitlines()]
    assert rejected["record"]["log"] == "unanswered"
    assert rejected["record"]["record"] == {"question": "huh?"}
    assert rejected["reason"].startswith("ResponseError: WRONGTYPE " + redis_prefix + "unanswered")
    assert f"redis refused 1 unanswered record(s) of spool {spool.path.name}" in caplog.text
    assert str(spool.rejected_path) in caplog.text
    assert registry.get_sample_value("qa_records_rejected_total", {"kind": "unanswered"}) == 1
    assert redis_client.get(redis_prefix + "unanswered") == b"not a list"  # left as it was
    log.flush()
    assert len(list(RedisRecordLog(redis_client, prefix=redis_prefix).read("feedback"))) == 3


@pytest.mark.integration
def test_records_wait_in_the_spool_while_redis_refuses_every_write(
    hung_redis, redis_prefix: str, tmp_path: Path
) -> None:
    """A Redis out of memory (or a read-only replica after a failover) refuses every write with
    an error reply (from a script: "ERR Error running script ... -OOM"): that is no fault of
    the records, none is set aside."""
    client = redis.Redis.from_url(hung_redis.url)
    spool = spool_of(tmp_path, redis_prefix)
    spool.append([KeptRecord("feedback", {"n": n}) for n in range(3)])
    log = FallbackRecordLog(
        RedisRecordLog(client, prefix=redis_prefix), MemoryRecordLog(), RedisFallback(), spool=spool
    )
    try:
        client.config_set("maxmemory", 1)
        with pytest.raises(redis.exceptions.ResponseError, match="OOM"):
            log.flush()
        assert spool.count() == 3 and not spool.rejected_path.exists()
        client.config_set("maxmemory", 0)
        assert log.flush() == 3
        assert [r["n"] for r in log.primary.read("feedback")] == [0, 1, 2]
    finally:
        client.config_set("maxmemory", 0)
        client.close()


@pytest.mark.integration
def test_the_app_counts_a_spooled_record_redis_refuses_on_its_metrics_page(
    make_app, redis_client, redis_prefix: str, spool_dir: Path
) -> None:
    """The service's own wiring: a record set aside at start-up shows on /metrics."""
    redis_client.set(redis_prefix + "unanswered", "not a list")
    spool_of(spool_dir, redis_prefix).append([KeptRecord("unanswered", {"question": "huh?"})])
    client = make_app().test_client()
    deadline = time.monotonic() + 20
    while 'qa_records_rejected_total{kind="unanswered"} 1.0' not in (
        page := client.get("/metrics").get_data(as_text=True)
    ):
        assert time.monotonic() < deadline, page[-2000:]
        time.sleep(0.2)
