"""Records of a Redis outage wait in a spool on disk: they outlive the worker that kept them."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis
from prometheus_client import CollectorRegistry
from support.servers import free_port, wait_until_serving
from support.services import frozen

from threefold.apps.qa.config import QAConfig
from threefold.apps.qa.fallback import (
    FallbackRecordLog,
    KeptRecord,
    RedisFallback,
    adopt_former_spool,
    spool_file_name,
)
from threefold.apps.qa.feedback import MemoryRecordLog
from threefold.apps.qa.metrics import QAMetrics
from threefold.apps.qa.redis_feedback import RedisRecordLog
from threefold.core.errors import ConfigError
from threefold.streaming.record_spool import RecordSpool
from threefold.streaming.write_ids import new_write_id, spooled_write_id

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


def spool_of(spool_dir: Path, redis_prefix: str, redis_url: str, **options: Any) -> RecordSpool:
    """The spool the app keeps the records of `redis_prefix` on the Redis at `redis_url` in."""
    return RecordSpool(
        spool_dir,
        file_name=spool_file_name(redis_prefix, redis_url),
        record_type=KeptRecord,
        **options,
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
    assert spool_of(spool_dir, redis_prefix, hung_redis.url).count() == 0


@pytest.mark.integration
def test_a_record_torn_by_a_kill_is_skipped_with_a_log_line_and_the_rest_replayed(
    redis_client,
    redis_url: str,
    redis_prefix: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The worker was killed while writing its third record: the next worker writes the two
    whole ones, in order, sets the torn one aside and logs it, and goes on."""
    kept = [KeptRecord("feedback", {"n": n}) for n in (1, 2)]
    spool_of(tmp_path, redis_prefix, redis_url).append(kept)
    spool = spool_of(tmp_path, redis_prefix, redis_url)
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
        spool=spool_of(tmp_path, redis_prefix, hung_redis.url, max_bytes=3 * one_record),
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
    redis_client,
    redis_url: str,
    redis_prefix: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Another app left a string at `<prefix>unanswered`: Redis refuses the unanswered record
    on its data (WRONGTYPE) whatever the retry. It goes to `<spool>.rejected` with the reason,
    logged and counted; the feedback spooled before and after it reaches Redis, in order, once,
    and the spool is empty. Before, every flush failed and kept the whole spool, for ever."""
    redis_client.set(redis_prefix + "unanswered", "not a list")
    spool = spool_of(tmp_path, redis_prefix, redis_url)
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
    spool = spool_of(tmp_path, redis_prefix, hung_redis.url)
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
    make_app, redis_client, redis_url: str, redis_prefix: str, spool_dir: Path
) -> None:
    """The service's own wiring: a record set aside at start-up shows on /metrics."""
    redis_client.set(redis_prefix + "unanswered", "not a list")
    spool_of(spool_dir, redis_prefix, redis_url).append(
        [KeptRecord("unanswered", {"question": "huh?"})]
    )
    client = make_app().test_client()
    deadline = time.monotonic() + 20
    while 'qa_records_rejected_total{kind="unanswered"} 1.0' not in (
        page := client.get("/metrics").get_data(as_text=True)
    ):
        assert time.monotonic() < deadline, page[-2000:]
        time.sleep(0.2)


def test_the_spool_is_named_by_prefix_and_redis_server_without_credentials() -> None:
    """Same prefix, another Redis server (host, port or db): another file. Credentials, and
    ways of writing the same server, do not change it; none shows in the name."""
    prefix = "threefold:qa:"
    name = spool_file_name(prefix, "redis://redis.internal:6379/0")
    assert name == "records-threefold-qa-82ffcf2e3ef9-81d9dacf5f32.jsonl"  # stable
    same_server = [
        "redis://:s3cret@redis.internal:6379/0",
        "redis://agent:s3cret@REDIS.internal:6379",
        "redis://redis.internal/0?password=s3cret",
    ]
    assert {spool_file_name(prefix, url) for url in same_server} == {name}
    other_servers = [
        "redis://redis-2.internal:6379/0",
        "redis://redis.internal:6380/0",
        "redis://redis.internal:6379/1",
        "redis://redis.internal:6379?db=2",
        "unix:///run/redis.sock?db=0",
    ]
    names = {spool_file_name(prefix, url) for url in other_servers}
    assert len(names) == len(other_servers) and name not in names
    assert all("s3cret" not in spool_file_name(prefix, url) for url in same_server)
    assert spool_file_name("other:", "redis://redis.internal:6379/0") != name


@pytest.mark.integration
def test_two_deployments_sharing_a_spool_dir_and_prefix_replay_to_their_own_redis(
    make_app, hung_redis, redis_url: str, redis_prefix: str
) -> None:
    """Deployment A (its Redis down) and B (another Redis, the same prefix and spool dir) on one
    host: B's replay leaves A's records alone (before, it wrote them into B's Redis); they reach
    A's Redis once it answers."""
    deployment_a = make_app(redis_url=hung_redis.url, redis_timeout_s=0.3, redis_retry_s=60)
    log_a = deployment_a.extensions["threefold.qa"].feedback.log
    with frozen(hung_redis):
        deployment_a.extensions["threefold.qa"].feedback.log_unanswered(
            session_id="s-a",
            question="kept by A",
            reason="out_of_scope",
            confidence=0.1,
            candidates=[],
        )
        assert log_a.spooled() == 1
        log_b = make_app().extensions["threefold.qa"].feedback.log
        log_b.flush()  # B's own start-up replay is over too when this returns
        assert stored(redis_url, redis_prefix + "unanswered") == []
        assert log_b.spooled() == 0 and log_a.spooled() == 1
    log_a.flush()
    assert [r["question"] for r in stored(hung_redis.url, redis_prefix + "unanswered")] == [
        "kept by A"
    ]
    assert stored(redis_url, redis_prefix + "unanswered") == []


def former_spool_name(redis_prefix: str) -> str:
    """The file the version before named the spool by (the prefix only)."""
    readable = re.sub(r"[^A-Za-z0-9]+", "-", redis_prefix).strip("-")[:60]
    return f"records-{readable}-{hashlib.sha256(redis_prefix.encode()).hexdigest()[:12]}.jsonl"


@pytest.mark.integration
def test_records_spooled_under_the_former_file_name_are_replayed_once_after_the_upgrade(
    make_app, redis_client, redis_url: str, redis_prefix: str, spool_dir: Path
) -> None:
    """The version before left a spool named by the prefix only: a worker killed while
    replaying it (Redis had taken `taken` and the id-less `old`, as that version's replay ids
    them), and a record it never wrote. The upgraded app moves them into its own spool, behind
    one it kept already, and each reaches Redis once; the former file is gone, so a later start
    writes nothing again."""
    taken = KeptRecord("feedback", {"turn_id": "taken"}, new_write_id())
    waiting = KeptRecord("feedback", {"turn_id": "waiting"}, new_write_id())
    old = KeptRecord("feedback", {"turn_id": "old"})
    RedisRecordLog(redis_client, prefix=redis_prefix).append_many(
        [taken.as_write(), replace(old, write_id=spooled_write_id(2, old.to_dict())).as_write()]
    )
    former = RecordSpool(
        spool_dir, file_name=former_spool_name(redis_prefix), record_type=KeptRecord
    )
    former.append([taken, waiting, old])
    spool_of(spool_dir, redis_prefix, redis_url).append(
        [KeptRecord("feedback", {"turn_id": "new"}, new_write_id())]
    )
    make_app().extensions["threefold.qa"].feedback.log.flush()
    turn_ids = [r["turn_id"] for r in stored(redis_url, redis_prefix + "feedback")]
    assert turn_ids == ["taken", "old", "new", "waiting"]
    assert not former.path.exists()
    assert spool_of(spool_dir, redis_prefix, redis_url).count() == 0
    make_app().extensions["threefold.qa"].feedback.log.flush()
    assert [r["turn_id"] for r in stored(redis_url, redis_prefix + "feedback")] == turn_ids


@pytest.mark.integration
def test_a_full_rejected_file_takes_no_more_and_the_app_counts_what_it_refused(
    make_app, redis_client, redis_url: str, redis_prefix: str, spool_dir: Path
) -> None:
    """`<spool>.rejected` holds SPOOL_REJECTED_MAX_MB already (earlier refusals nobody read):
    a record Redis refuses now is not added to it, and leaves the spool; /metrics counts it
    (qa_records_rejected_lost_total) besides qa_records_rejected_total."""
    redis_client.set(redis_prefix + "unanswered", "not a list")
    spool = spool_of(spool_dir, redis_prefix, redis_url)
    spool.append([KeptRecord("unanswered", {"question": "huh?"})])
    spool.rejected_path.write_bytes(b"x" * (2**20 - 10) + b"\n")
    client = make_app(spool_rejected_max_mb=1).test_client()
    deadline = time.monotonic() + 20
    while 'qa_records_rejected_lost_total{kind="unanswered"} 1.0' not in (
        page := client.get("/metrics").get_data(as_text=True)
    ):
        assert time.monotonic() < deadline, page[-2000:]
        time.sleep(0.2)
    assert 'qa_records_rejected_total{kind="unanswered"} 1.0' in page
    assert spool.rejected_path.stat().st_size == 2**20 - 9
    assert spool.count() == 0


def test_the_rejected_file_limit_is_a_setting_of_its_own() -> None:
    settings = QAConfig.from_env({"THREEFOLD_QA_SPOOL_REJECTED_MAX_MB": "8"})
    assert (settings.spool_max_mb, settings.spool_rejected_max_mb) == (64, 8)
    assert QAConfig().spool_rejected_max_mb == 16
    with pytest.raises(ConfigError, match="spool_rejected_max_mb must be >= 1, found 0"):
        QAConfig(spool_rejected_max_mb=0)


def test_records_of_the_former_spool_wait_there_while_the_new_one_is_full(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    former = RecordSpool(tmp_path, file_name=former_spool_name("p:"), record_type=KeptRecord)
    former.append([KeptRecord("feedback", {"n": n}, new_write_id()) for n in range(3)])
    url = "redis://localhost:6379/0"
    with caplog.at_level(logging.ERROR):
        assert adopt_former_spool(spool_of(tmp_path, "p:", url, max_bytes=10), former) == 0
    assert former.count() == 3
    assert f"records spooled by a former version in {former.path} not moved" in caplog.text
    spool = spool_of(tmp_path, "p:", url)
    assert adopt_former_spool(spool, former) == 3
    assert [k.record["n"] for k in spool_records(spool)] == [0, 1, 2]
    assert not former.path.exists()


def spool_records(spool: RecordSpool) -> list[KeptRecord]:
    lines = spool.path.read_text(encoding="utf-8").splitlines()
    return [KeptRecord.from_dict(json.loads(line)) for line in lines]


def test_a_refused_memory_record_is_counted_refused_before_lost(tmp_path) -> None:
    """A record kept in memory that Redis refuses and that no longer fits the `.rejected` file:
    a scrape in between must never see it lost without it being counted refused first."""
    from threefold.apps.qa.fallback import FallbackRecordLog, KeptRecord
    from threefold.streaming.record_spool import RecordSpool

    events: list[tuple[str, object]] = []
    spool = RecordSpool(
        tmp_path, file_name="qa.spool", record_type=KeptRecord, rejected_max_bytes=10
    )
    spool.on_not_set_aside.append(lambda kinds: events.append(("lost", dict(kinds))))
    log = FallbackRecordLog(None, None, None, spool=spool)
    log.on_rejected.append(lambda kind: events.append(("refused", kind)))
    log._reject([(KeptRecord("feedback", {"text": "y" * 50}), "WRONGTYPE")])
    assert events == [("refused", "feedback"), ("lost", {"feedback": 1})]
