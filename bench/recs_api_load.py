"""Benchmark: recommendation API latency (cache hits vs misses) and throughput on loopback.

    python -m bench.recs_api_load [--requests 200] [--concurrency 8] [--seconds 10]

Serves the app (shipped sample catalog and events, embedded redis-server, werkzeug threaded
server, one process) on a free loopback port, then measures, sequentially, the latency of
requests that miss the cache (each query seen for the first time) and of the same requests
again (cache hits), and finally throughput with `--concurrency` client threads for `--seconds`
(80 known users and new visitors, 5% of requests post a click, which invalidates that user's
cached lists). Writes bench/results/recs_api_load.json and prints one Markdown row:

| service | miss p50/p99 ms | hit p50/p99 ms | concurrent req/s | conc. p50/p99 ms | hit rate |
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from bench.machine import load_average

RESULTS = Path(__file__).resolve().parent / "results" / "recs_api_load.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="sequential miss/hit requests")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0, help="concurrent phase length")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    from werkzeug.serving import make_server

    from threefold.apps.recs.config import RecsConfig
    from threefold.apps.recs.resources import open_resources, prepare_recs
    from threefold.apps.recs.web import create_app
    from threefold.core.base_model import configure_offline
    from threefold.streaming.connections import RedisSettings
    from threefold.streaming.services import start_redis

    configure_offline()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    logging.getLogger("threefold.recs.http").setLevel(logging.WARNING)
    started = datetime.now(timezone.utc)
    load = load_average()
    redis = start_redis()
    try:
        settings = RecsConfig(redis_prefix="bench:recs:")
        redis_settings = RedisSettings(url=redis.url)
        prepare_recs(settings, redis_settings)
        app = create_app(settings, open_resources(settings, redis_settings))
        server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{server.server_port}"
        users = app.extensions["threefold.recs"].histories.known_users
        items = app.extensions["threefold.recs"].recommender.catalog.ids
        rng = random.Random(args.seed)
        # distinct (k, offset) per request, so the first pass only misses the cache
        queries = [
            f"/api/recommendations?user_id={rng.choice(users)}&k={5 + i % 20}"
            f"&offset={i // 20}&diversity=0.{i % 10}"
            for i in range(args.requests)
        ]
        _get(base, "/api/recommendations?user_id=warmup&k=5")
        misses = [_timed_get(base, q) for q in queries]
        hits = [_timed_get(base, q) for q in queries]
        concurrent, errors, wall = _concurrent(base, users, items, args)
        health = json.loads(_get(base, "/healthz"))
        server.shutdown()
    finally:
        redis.stop()

    def summary(values: list[float]) -> dict[str, float]:
        array = np.array(values) * 1000
        return {
            "n": len(values),
            "p50_ms": round(float(np.percentile(array, 50)), 2),
            "p99_ms": round(float(np.percentile(array, 99)), 2),
            "mean_ms": round(float(array.mean()), 2),
        }

    result = {
        "benchmark": "recs_api_load",
        "setup": "werkzeug threaded server, 1 process, embedded redis-server, loopback; shipped "
        "sample catalog (72 items) and event log; base MiniLM encoder, combiner tuned at start",
        "cache_miss": summary(misses),
        "cache_hit": summary(hits),
        "concurrent": {
            **summary(concurrent),
            "concurrency": args.concurrency,
            "seconds": round(wall, 2),
            "requests_per_second": round(len(concurrent) / wall, 1),
            "errors": errors,
        },
        "cache": health["cache"],
        "machine": {
            "cpu_count": os.cpu_count(),
            "load_average_at_start": load,
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "date": started.isoformat(timespec="seconds"),
        "command": "python -m bench.recs_api_load " + " ".join(argv or []),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    miss, hit, conc = result["cache_miss"], result["cache_hit"], result["concurrent"]
    print(
        f"| threefold recs API (werkzeug, 1 proc, {os.cpu_count()} CPU) "
        f"| {miss['p50_ms']:.1f} / {miss['p99_ms']:.1f} "
        f"| {hit['p50_ms']:.1f} / {hit['p99_ms']:.1f} "
        f"| {conc['requests_per_second']:.0f} (c={args.concurrency}) "
        f"| {conc['p50_ms']:.1f} / {conc['p99_ms']:.1f} | {health['cache']['hit_rate']:.2f} |"
    )
    return 0


def _get(base: str, path: str) -> str:
    with urllib.request.urlopen(base + path, timeout=30) as response:
        return response.read().decode()


def _timed_get(base: str, path: str) -> float:
    begin = time.perf_counter()
    _get(base, path)
    return time.perf_counter() - begin


def _concurrent(
    base: str, users: list[str], items: list[str], args
) -> tuple[list[float], int, float]:
    deadline = time.perf_counter() + args.seconds
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()

    def worker(number: int) -> None:
        nonlocal errors
        rng = random.Random(args.seed + number)
        while time.perf_counter() < deadline:
            user = rng.choice(users) if rng.random() < 0.9 else f"visitor-{rng.randint(1, 50)}"
            begin = time.perf_counter()
            try:
                if rng.random() < 0.05:
                    body = json.dumps(
                        {"user_id": user, "item_id": rng.choice(items), "event": "click"}
                    ).encode()
                    request = urllib.request.Request(
                        base + "/api/events",
                        data=body,
                        headers={"Content-Type": "application/json"},
                    )
                    urllib.request.urlopen(request, timeout=30).read()
                else:
                    _get(base, f"/api/recommendations?user_id={user}&k=10")
            except OSError:
                with lock:
                    errors += 1
                continue
            with lock:
                latencies.append(time.perf_counter() - begin)

    begin = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        list(pool.map(worker, range(args.concurrency)))
    return latencies, errors, time.perf_counter() - begin


if __name__ == "__main__":
    raise SystemExit(main())
