"""Benchmark: fault injection on loopback (issue 12's table with tried/failed/lost/duplicated).

    nice -n 10 python -m bench.reliability [--http-examples N] [--messages N]

Probes, each on embedded services started here (streaming/services.py) and the apps' real
factories:
- consumer SIGKILL x3: a ConsumerRunner subprocess (pass-through processor) is killed three
  times mid-stream and restarted; every input must reach the output topic (at-least-once).
- broker restart: the broker is stopped for 2 s and started again under a running consumer.
- 30 kinds of malformed Kafka messages (oversized, binary, every codec, non-UTF-8, deep
  nesting, lone surrogates, bad timestamps, ...): each must reach the output or the
  dead-letter topic exactly once, and the consumer must keep running.
- Redis outage under chat and recs traffic: Redis is killed for `--outage-s` under 2 chat and 2
  recs clients; no 5xx, and every event answered 202 must be in Redis once it is back.
- fuzzed HTTP: requests drawn from each app's /openapi.json (tests/support/openapi_fuzz.py).

failed = requests answered 5xx (or a 4xx without a JSON error), or consumer exits; lost =
accepted inputs missing afterwards; duplicated = inputs delivered more than once.
Writes bench/results/reliability.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "reliability.json"
sys.path.insert(0, str(ROOT / "tests"))  # support.services / support.openapi_fuzz helpers
SRC, OUT, DLQ = "in", "out", "in.dlq"
ID_HEADER = "probe-id"
SCRATCH = Path(tempfile.mkdtemp(prefix="threefold-reliability-"))


@dataclass
class Probe:
    probe: str
    tried: int
    failed: int
    lost: int
    duplicated: int
    result: str


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=400, help="SIGKILL probe inputs")
    parser.add_argument("--http-examples", type=int, default=40, help="per API operation")
    parser.add_argument("--outage-s", type=float, default=10.0)
    parser.add_argument(
        "--consume", nargs=2, metavar=("BOOTSTRAP", "GROUP"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.consume:
        return _consume_forever(*args.consume)
    from threefold.streaming.services import start_kafka

    started = time.monotonic()
    probes: list[Probe] = []
    for probe in (lambda b: sigkill_probe(b, args.messages), malformed_probe):
        broker = start_kafka()  # a broker per probe: topics start empty
        try:
            probes.append(probe(broker.bootstrap_servers))
        finally:
            broker.stop()
    probes.append(broker_restart_probe())
    probes.extend(redis_outage_probes(args.outage_s))
    probes.extend(http_fuzz_probes(args.http_examples))
    report = {
        "benchmark": "reliability",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": os.uname().nodename,
        "cpus": os.cpu_count(),
        "args": {k: v for k, v in vars(args).items() if k != "consume"},
        "seconds": round(time.monotonic() - started, 1),
        "probes": [asdict(p) for p in probes],
    }
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print("| probe | tried | failed | lost | duplicated | result |\n|---|---|---|---|---|---|")
    for p in probes:
        print(f"| {p.probe} | {p.tried} | {p.failed} | {p.lost} | {p.duplicated} | {p.result} |")
    return 0


# -- Kafka ---------------------------------------------------------------------------------------


class PassThrough:
    """Forwards each message's value and headers; rejects what is not a JSON object with text."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s

    def process(self, batch):
        from threefold.streaming.runner import BatchResult, Output, ProcessingError

        time.sleep(self.delay_s)
        outputs, failed = [], []
        for m in batch:
            try:
                body = m.json()
                if not isinstance(body, dict) or not isinstance(body.get("text"), str):
                    raise ProcessingError("expected a JSON object with a text field")
                body["text"].encode("utf-8")
            except (ProcessingError, UnicodeEncodeError) as exc:
                failed.append((m, str(exc)))
                continue
            outputs.append(Output(OUT, {"text": body["text"][:1000]}, headers=m.headers))
        return BatchResult(outputs, failed)


def _runner(bootstrap: str, group: str, delay_s: float = 0.0):
    from threefold.streaming.runner import ConsumerRunner

    return ConsumerRunner(
        bootstrap=bootstrap,
        topics=[SRC],
        group_id=group,
        processor=PassThrough(delay_s),
        dead_letter_topic=DLQ,
        max_batch=16,
        max_wait_ms=50,
        retry_backoff_ms=10,
        max_reconnect_backoff_ms=1000,
    )


def _consume_forever(bootstrap: str, group: str) -> int:
    _runner(bootstrap, group, delay_s=0.05).run()
    return 0


def _produce(bootstrap: str, values: list[tuple[str, bytes | None]], **producer_kw) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, **producer_kw)
    try:
        for probe_id, value in values:
            producer.send(
                SRC, value=value, key=probe_id.encode(), headers=[(ID_HEADER, probe_id.encode())]
            )
        producer.flush(timeout=60)
    finally:
        producer.close()


def _delivered(bootstrap: str, topics: tuple[str, ...], expected: int, timeout_s: float) -> Counter:
    """probe-id -> how many times it reached any of `topics` (waits for `expected` distinct)."""
    from support.services import read_topic_records

    deadline = time.monotonic() + timeout_s
    while True:
        seen: Counter = Counter()
        for topic in topics:
            for record in read_topic_records(bootstrap, topic, timeout_s=10):
                ids = [v for k, v in record.headers or () if k == ID_HEADER]
                seen.update(i.decode("utf-8", "replace") for i in ids[:1])
        if len(seen) >= expected or time.monotonic() > deadline:
            return seen
        time.sleep(1)


def _counts(seen: Counter, ids: list[str]) -> tuple[int, int]:
    lost = sum(1 for i in ids if seen[i] == 0)
    return lost, sum(max(0, seen[i] - 1) for i in ids)


def sigkill_probe(bootstrap: str, n: int) -> Probe:
    from threefold.streaming.kafka_config import ensure_topics

    ensure_topics(bootstrap, [SRC, OUT, DLQ])
    ids = [f"kill-{i}" for i in range(n)]
    _produce(bootstrap, [(i, json.dumps({"text": i}).encode()) for i in ids])
    group = f"g-{uuid.uuid4().hex[:6]}"
    command = [sys.executable, "-m", "bench.reliability", "--consume", bootstrap, group]
    kills = 0
    for round_ in range(4):
        proc = subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        if round_ < 3:
            target = (round_ + 1) * n // 4
            _delivered(bootstrap, (OUT,), target, timeout_s=120)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
        else:
            seen = _delivered(bootstrap, (OUT, DLQ), n, timeout_s=180)
            proc.terminate()
            proc.wait(timeout=30)
    lost, duplicated = _counts(seen, ids)
    return Probe(
        "consumer SIGKILL x3 mid-stream",
        n,
        0,
        lost,
        duplicated,
        f"{kills} kills; resumed from committed offsets (duplicates = at-least-once redelivery)",
    )


def malformed_messages() -> list[tuple[str, bytes | None, dict]]:
    """(kind, value, producer options): 30 kinds a news producer might send by mistake."""
    good = json.dumps({"text": "Shares rise"}).encode()
    deep = b'{"text": "x", "n": ' + b"[" * 1000 + b"]" * 1000 + b"}"
    kinds: list[tuple[str, bytes | None, dict]] = [
        ("oversized 2 MB JSON", json.dumps({"text": "x" * 2_000_000}).encode(), {}),
        ("binary 300 KB", os.urandom(300_000), {}),
        ("gzip", good, {"compression_type": "gzip"}),
        ("snappy", good, {"compression_type": "snappy"}),
        ("lz4", good, {"compression_type": "lz4"}),
        ("zstd", good, {"compression_type": "zstd"}),
        ("non-UTF-8 bytes", b'{"text": "caf\xe9"}', {}),
        ("invalid JSON", b'{"text": ', {}),
        ("empty value", b"", {}),
        ("null value (tombstone)", None, {}),
        ("JSON array", b"[1, 2]", {}),
        ("JSON number", b"42", {}),
        ("JSON string", b'"text"', {}),
        ("nested 1000 deep", deep, {}),
        ("missing text", b'{"headline": "x"}', {}),
        ("text is a number", b'{"text": 5}', {}),
        ("text is null", b'{"text": null}', {}),
        ("lone surrogate", b'{"text": "\\ud800"}', {}),
        ("NUL in text", b'{"text": "a\\u0000b"}', {}),
        ("UTF-8 BOM", b"\xef\xbb\xbf" + good, {}),
        ("control characters", b'{"text": "\\u0007\\u001b[31m"}', {}),
        ("timestamp 1e15", b'{"text": "x", "timestamp": 1e15}', {}),
        ("negative timestamp", b'{"text": "x", "timestamp": -1}', {}),
        ("timestamp text", b'{"text": "x", "timestamp": "yesterday"}', {}),
        ("NaN", b'{"text": "x", "score": NaN}', {}),
        ("duplicate keys", b'{"text": "a", "text": "b"}', {}),
        ("trailing garbage", good + b"garbage", {}),
        (
            "10,000 fields",
            json.dumps({"text": "x", **{f"f{i}": i for i in range(10_000)}}).encode(),
            {},
        ),
        ("emoji and RTL text", json.dumps({"text": "📉 \u202ebad"}).encode(), {}),
        ("huge number", b'{"text": "x", "n": 1e999}', {}),
    ]
    return kinds


def malformed_probe(bootstrap: str) -> Probe:
    from threefold.streaming.kafka_config import ensure_topics

    kinds = malformed_messages()
    ensure_topics(bootstrap, [SRC, OUT, DLQ])
    from support.services import read_topic_records

    runner = _runner(bootstrap, f"g-{uuid.uuid4().hex[:6]}")
    exits: list[BaseException] = []
    thread = threading.Thread(target=lambda: _run_catching(runner, exits), daemon=True)
    thread.start()
    ids = []
    for i, (_kind, value, options) in enumerate(kinds):
        probe_id = f"bad-{i}"
        ids.append(probe_id)
        _produce(bootstrap, [(probe_id, value)], max_request_size=4_000_000, **options)
    seen = _delivered(bootstrap, (OUT, DLQ), len(ids), timeout_s=120)
    runner.stop()
    thread.join(timeout=60)
    lost, duplicated = _counts(seen, ids)
    dead = len(read_topic_records(bootstrap, DLQ, timeout_s=10))
    return Probe(
        f"{len(kinds)} kinds of malformed Kafka messages",
        len(ids),
        len(exits) + (1 if thread.is_alive() else 0),
        lost,
        duplicated,
        f"{dead} dead-lettered, {len(ids) - lost - dead} processed; consumer kept running",
    )


def _run_catching(runner, exits: list[BaseException]) -> None:
    try:
        runner.run()
    except BaseException as exc:  # counted as a failure in the table
        exits.append(exc)


def broker_restart_probe(n: int = 50) -> Probe:
    from threefold.streaming.kafka_config import ensure_topics
    from threefold.streaming.services import start_kafka

    brokers = [start_kafka()]
    bootstrap = brokers[0].bootstrap_servers
    try:
        ensure_topics(bootstrap, [SRC, OUT, DLQ])
        runner = _runner(bootstrap, "g-restart")
        exits: list[BaseException] = []
        thread = threading.Thread(target=lambda: _run_catching(runner, exits), daemon=True)
        thread.start()
        first = [f"before-{i}" for i in range(n)]
        _produce(bootstrap, [(i, json.dumps({"text": i}).encode()) for i in first])
        seen_before = _delivered(bootstrap, (OUT,), n, timeout_s=120)
        brokers[0].stop()  # the embedded broker keeps nothing: topics and offsets start over
        time.sleep(2)
        brokers.append(start_kafka(port=int(bootstrap.rsplit(":", 1)[1])))
        ensure_topics(bootstrap, [SRC, OUT, DLQ])
        second = [f"after-{i}" for i in range(n)]
        _produce(bootstrap, [(i, json.dumps({"text": i}).encode()) for i in second])
        seen_after = _delivered(bootstrap, (OUT,), n, timeout_s=180)
        runner.stop()
        thread.join(timeout=60)
        lost_a, dup_a = _counts(seen_before, first)
        lost_b, dup_b = _counts(seen_after, second)
        return Probe(
            "broker restart (2 s) under a running consumer",
            2 * n,
            len(exits),
            lost_a + lost_b,
            dup_a + dup_b,
            f"{runner.stats.reconnects} reconnect(s); degraded at the end: {runner.degraded}",
        )
    finally:
        brokers[-1].stop()


# -- Redis outage under HTTP traffic --------------------------------------------------------------


def _redis_on(port: int) -> Any:
    """redis-server on this exact port, every write fsync'd (a restart keeps all it acked)."""
    import redis

    from threefold.streaming.services import ManagedProcess, redis_server_binary, wait_until_ready

    argv = [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1"]
    argv += ["--save", "", "--appendonly", "yes", "--appendfsync", "always"]
    process = ManagedProcess("redis", [*argv, "--dir", str(SCRATCH)])

    def ready() -> bool:
        try:
            return bool(redis.Redis(port=port, socket_connect_timeout=0.2).ping())
        except redis.ConnectionError:
            return False

    wait_until_ready(process, ready, f"redis-server on port {port}")
    return process


def redis_outage_probes(outage_s: float) -> list[Probe]:
    import redis

    from threefold.streaming.services import free_port

    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    server = _redis_on(port)
    qa = _qa_client(url, "rel:qa:")
    recs = _recs_client(url, "rel:recs:")
    item = recs.get("/api/recommendations?user_id=probe&k=1").get_json()["items"][0]["item_id"]
    stop = threading.Event()
    chats: Counter = Counter()
    events: Counter = Counter()
    accepted: list[str] = []
    shared: Counter = Counter()  # events answered 202, by whether Redis had them at once

    def chat_client() -> None:
        while not stop.is_set():
            reply = qa.post("/api/chat", json={"message": "how do I return an order?"})
            status = reply.status_code
            degraded = status == 200 and reply.get_json().get("degraded")
            chats["5xx" if status >= 500 else f"{status}{' degraded' if degraded else ''}"] += 1

    def recs_client(worker: int) -> None:
        i = 0
        while not stop.is_set():
            user = f"u{worker}-{i}"
            i += 1
            event = {"user_id": user, "item_id": item, "event": "purchase"}
            response = recs.post("/api/events", json=event)
            status = response.status_code
            events["5xx" if status >= 500 else str(status)] += 1
            if status == 202:
                accepted.append(user)
                shared[bool(response.get_json()["shared"])] += 1
            got = recs.get(f"/api/recommendations?user_id={user}&k=3").status_code
            events["5xx" if got >= 500 else f"get {got}"] += 1

    threads = [threading.Thread(target=chat_client) for _ in range(2)]
    threads += [threading.Thread(target=recs_client, args=(w,)) for w in range(2)]
    for t in threads:
        t.start()
    time.sleep(3)
    os.kill(server.pid, signal.SIGKILL)
    server.stop()  # reaps it
    time.sleep(outage_s)
    server = _redis_on(port)
    time.sleep(3)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    client = redis.Redis.from_url(url)
    users = set(accepted)
    deadline = time.monotonic() + 60  # the breaker retries Redis after its pause (5 s)
    while time.monotonic() < deadline:  # a computed (uncached) list replays the spool
        recs.get(f"/api/recommendations?user_id=probe-{uuid.uuid4().hex[:8]}&k=1")
        if all(client.llen(f"rel:recs:history:{u}") for u in users):
            break
        time.sleep(1)
    stored = Counter(u for u in accepted if client.llen(f"rel:recs:history:{u}") > 0)
    lengths = Counter(client.llen(f"rel:recs:history:{u}") for u in set(accepted))
    server.stop()
    lost = len(set(accepted)) - len(stored)
    return [
        Probe(
            f"Redis killed {outage_s:g} s under 2 chat clients",
            sum(chats.values()),
            chats["5xx"],
            0,
            0,
            ", ".join(f"{k}: {v}" for k, v in sorted(chats.items())),
        ),
        Probe(
            f"Redis killed {outage_s:g} s under 2 recs clients (events + recommendations)",
            sum(events.values()),
            events["5xx"],
            lost,
            sum(n - 1 for n in lengths.elements() if n > 1),
            f"{len(accepted)} events answered 202 ({shared[False]} spooled during the outage); "
            f"{len(stored)} found in Redis afterwards",
        ),
    ]


# -- HTTP fuzzing ---------------------------------------------------------------------------------


def http_fuzz_probes(examples: int) -> list[Probe]:
    from threefold.core.openapi import document_routes

    probes = []
    for name, client, document, tokens in _fuzz_targets():
        operations = sorted(document_routes(document))
        tried, failures = 0, []
        for method, path in operations:
            sent, failed = _fuzz_operation(client, document, method, path, tokens, examples)
            tried += sent
            failures += failed
        probes.append(
            Probe(
                f"fuzzed HTTP, {name} ({len(operations)} operations)",
                tried,
                len(failures),
                0,
                0,
                failures[0] if failures else "no 5xx; every 4xx a JSON error; statuses documented",
            )
        )
    return probes


def _fuzz_operation(
    client: Any,
    document: dict[str, Any],
    method: str,
    path: str,
    tokens: tuple[dict[str, str], ...],
    examples: int,
) -> tuple[int, list[str]]:
    """(requests sent, failure messages) for `examples` drawn requests to one operation."""
    from hypothesis import HealthCheck, given, settings
    from support.openapi_fuzz import FuzzRequest, check_response, requests_for

    sent, failures = [0], []

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(request=requests_for(document, method, path, tokens))
    def run(request: FuzzRequest) -> None:
        sent[0] += 1
        response = request.send(client)
        try:
            check_response(document, method, path, request, response)
        except AssertionError as exc:
            failures.append(str(exc)[:300])
        finally:
            response.close()

    run()
    return sent[0], failures


def _fuzz_targets():
    from threefold.apps.alerts.config import AlertsConfig
    from threefold.apps.alerts.resources import open_resources as open_alerts
    from threefold.apps.alerts.web import create_app as alerts_app
    from threefold.apps.alerts.web.openapi import DOCUMENT as ALERTS
    from threefold.apps.qa.web.openapi import DOCUMENT as QA
    from threefold.apps.recs.web.openapi import DOCUMENT as RECS
    from threefold.streaming.connections import RedisSettings
    from threefold.streaming.services import start_redis

    server = start_redis()
    admin = {"Authorization": "Bearer admin-token"}
    qa = _qa_client(
        server.url,
        "fuzz:qa:",
        admin_token="admin-token",
        agent_tokens="alice:agent-token",
        agent_wait_timeout_s=0.05,
    )
    yield "qa", qa, QA, (admin, {"Authorization": "Bearer agent-token"})
    recs = _recs_client(server.url, "fuzz:recs:", admin_token="admin-token")
    yield "recs", recs, RECS, (admin,)
    alerts_settings = AlertsConfig(redis_prefix="fuzz:alerts:", rate_limit_per_minute=None)
    alerts = alerts_app(
        alerts_settings, open_alerts(alerts_settings, RedisSettings(url=server.url))
    ).test_client()
    yield "alerts dashboard", alerts, ALERTS, ()
    server.stop()


def _qa_client(redis_url: str, prefix: str, **overrides: Any) -> Any:
    """A test client of the real QA app on the shipped sample FAQ (built once, in SCRATCH)."""
    from threefold.apps.qa.cli import ensure_bot
    from threefold.apps.qa.config import SAMPLE_KB, QAConfig
    from threefold.apps.qa.resources import open_resources
    from threefold.apps.qa.web import create_app
    from threefold.core.base_model import configure_offline
    from threefold.streaming.connections import RedisSettings

    configure_offline()
    settings = QAConfig(
        bot_dir=str(SCRATCH / "bot"),
        kb_path=str(SAMPLE_KB),
        redis_prefix=prefix,
        rate_limit_per_minute=None,
        **overrides,
    )
    encoder = ensure_bot(settings)
    resources = open_resources(settings, RedisSettings(url=redis_url), encoder=encoder)
    return create_app(settings, resources).test_client()


def _recs_client(redis_url: str, prefix: str, **overrides: Any) -> Any:
    """A test client of the real recs app on the shipped catalog and its own spool folder."""
    from threefold.apps.recs.config import RecsConfig
    from threefold.apps.recs.resources import open_resources
    from threefold.apps.recs.web import create_app
    from threefold.streaming.connections import RedisSettings

    settings = RecsConfig(
        redis_prefix=prefix,
        rate_limit_per_minute=None,
        spool_dir=Path(tempfile.mkdtemp(dir=SCRATCH, prefix="spool-")),
        **overrides,
    )
    resources = open_resources(settings, RedisSettings(url=redis_url))
    return create_app(settings, resources).test_client()


if __name__ == "__main__":
    raise SystemExit(main())
