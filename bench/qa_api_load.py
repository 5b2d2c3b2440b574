"""Benchmark: QA bot HTTP API latency under concurrent load on loopback.

    python -m bench.qa_api_load [--server gunicorn|werkzeug] [--threads 8] [--requests 400]

Builds the shipped sample store FAQ (`threefold qa build`), serves it in a separate process
(gunicorn, 2 workers x 4 threads, or the werkzeug dev server) with an embedded Redis, the rate
limit off and OMP_NUM_THREADS=--omp-threads (default 1). Then `--threads` client threads send
`--requests` POST /api/chat in total, questions drawn from apps/qa/data/store_queries.csv;
each client thread keeps one session, so
sessions are read and written in Redis on every turn (follow-up logic included). Reports latency
percentiles per request and throughput. In the same run (before the server starts) it measures
the encode-bound limit: one-text encodes per second of the packaged embedder in this process
with the same OMP threads (what a server that encodes each request alone could reach at best);
`ratio_to_encode_limit` = req/s over that. The server micro-batches concurrent requests
(apps/qa/micro_batch.py). Writes bench/results/qa_api_load.json and prints:

| server | clients | requests | errors | p50 ms | p95 ms | p99 ms | req/s | encode limit/s | ratio |
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from bench.commands import threefold_command

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_KB = ROOT / "apps" / "qa" / "data" / "store_faq.csv"
SAMPLE_QUERIES = ROOT / "apps" / "qa" / "data" / "store_queries.csv"
RESULTS = Path(__file__).resolve().parent / "results" / "qa_api_load.json"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(base: str, process: subprocess.Popen, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"server exited with code {process.returncode} before becoming healthy")
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    sys.exit(f"server at {base} not healthy within {timeout_s:.0f} s")


def _post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {}


def load_test(base: str, queries: list[str], *, threads: int, total: int, seed: int) -> dict:
    latencies: list[float] = []
    errors: list[int] = []
    lock = threading.Lock()
    per_thread = [total // threads + (i < total % threads) for i in range(threads)]

    def client(index: int) -> None:
        rng = random.Random(seed + index)
        session_id = None
        for _ in range(per_thread[index]):
            body = {"message": rng.choice(queries)}
            if session_id:
                body["session_id"] = session_id
            started = time.perf_counter()
            status, reply = _post(f"{base}/api/chat", body)
            elapsed = (time.perf_counter() - started) * 1000
            with lock:
                latencies.append(elapsed)
                if status != 200:
                    errors.append(status)
            session_id = reply.get("session_id", session_id)

    workers = [threading.Thread(target=client, args=(i,)) for i in range(threads)]
    wall = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    wall = time.perf_counter() - wall
    lat = np.asarray(latencies)
    return {
        "requests": len(latencies),
        "errors": len(errors),
        "error_statuses": sorted(set(errors)),
        "p50_ms": round(float(np.percentile(lat, 50)), 1),
        "p95_ms": round(float(np.percentile(lat, 95)), 1),
        "p99_ms": round(float(np.percentile(lat, 99)), 1),
        "mean_ms": round(float(lat.mean()), 1),
        "requests_per_s": round(len(latencies) / wall, 1),
        "wall_seconds": round(wall, 1),
    }


def encode_limit(queries: list[str], *, omp_threads: int, seconds: float = 8.0) -> dict:
    """Single-text encodes per second (and texts/s in batches of 8) of the packaged embedder."""
    import torch

    from threefold.core.embedder import Embedder

    torch.set_num_threads(omp_threads)
    embedder = Embedder().load()
    embedder.encode(queries[:16])

    def rate(size: int) -> float:
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            start = done % len(queries)
            embedder.encode((queries * 2)[start : start + size], batch_size=size)
            done += size
        return round(done / (time.perf_counter() - started), 1)

    return {"single_encodes_per_s": rate(1), "batch8_texts_per_s": rate(8)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", choices=["gunicorn", "werkzeug"], default="gunicorn")
    parser.add_argument("--threads", type=int, default=8, help="concurrent clients")
    parser.add_argument("--requests", type=int, default=400, help="requests in total")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument(
        "--omp-threads",
        type=int,
        default=1,
        help="OMP_NUM_THREADS of the server (torch/faiss intra-op threads)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    with SAMPLE_QUERIES.open(newline="", encoding="utf-8") as handle:
        queries = [row["query"] for row in csv.DictReader(handle)]
    limit = encode_limit(queries, omp_threads=args.omp_threads)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="qa-load-") as tmp:
        bot_dir = Path(tmp) / "bot"
        subprocess.run(
            [*threefold_command(), "qa", "build", "--kb", str(SAMPLE_KB), "--out", str(bot_dir)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        env = {
            **os.environ,
            "THREEFOLD_QA_BOT_DIR": str(bot_dir),
            "THREEFOLD_QA_RATE_LIMIT_PER_MINUTE": "0",
            "THREEFOLD_QA_KB_PATH": "",
            "OMP_NUM_THREADS": str(args.omp_threads),
            "MKL_NUM_THREADS": str(args.omp_threads),
        }
        if args.server == "gunicorn":
            from threefold.streaming.services import start_redis

            redis = start_redis()  # shared by both workers (each would start its own otherwise)
            env["REDIS_URL"] = redis.url
            command = [
                sys.executable, "-m", "gunicorn", "-w", "2", "--threads", "4",
                "-b", f"127.0.0.1:{port}", "--log-level", "warning",
                "threefold.apps.qa.web:create_app()",
            ]  # fmt: skip
        else:
            redis = None
            command = [*threefold_command(), "serve", "qa", "--port", str(port)]
        log = open(Path(tmp) / "server.log", "wb")  # noqa: SIM115 - closed below
        server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            try:
                _wait_healthy(base, server)
            except SystemExit:
                log.flush()
                print(
                    (Path(tmp) / "server.log").read_text(errors="replace")[-3000:], file=sys.stderr
                )
                raise
            load_test(base, queries, threads=2, total=args.warmup, seed=args.seed + 1000)
            result = load_test(
                base, queries, threads=args.threads, total=args.requests, seed=args.seed
            )
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=30)
            log.close()
            if redis is not None:
                redis.stop()
    report = {
        "benchmark": "qa_api_load",
        "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "server": args.server + (" (2 workers x 4 threads)" if args.server == "gunicorn" else ""),
        "endpoint": "POST /api/chat",
        "clients": args.threads,
        "server_omp_threads": args.omp_threads,
        "kb": "apps/qa/data/store_faq.csv (44 FAQs, 131 questions)",
        "queries": "apps/qa/data/store_queries.csv, random with replacement",
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average_1m": round(os.getloadavg()[0], 2),
            "note": "client, server and other jobs share these CPUs",
        },
        **result,
        "encode_limit": limit,
        "ratio_to_encode_limit": round(result["requests_per_s"] / limit["single_encodes_per_s"], 3),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(
        "| server | clients | requests | errors | p50 ms | p95 ms | p99 ms | req/s | "
        "encode limit/s | ratio |"
    )
    print("|" + " --- |" * 10)
    print(
        f"| {report['server']} | {args.threads} | {result['requests']} | {result['errors']} | "
        f"{result['p50_ms']} | {result['p95_ms']} | {result['p99_ms']} | "
        f"{result['requests_per_s']} | {limit['single_encodes_per_s']} | "
        f"{report['ratio_to_encode_limit']} |"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
