"""Benchmark: the recommendation API on a synthetic 1,000,000-item catalog, IVF against exact.

    python -m bench.recs_scale [--items 1000000] [--users 20000] [--requests 300] [--seed 0]
                               [--vectors items.npy] [--gpu] [--request-threads 1]
                               [--sequence ensemble|none]

No text model embeds a million items here (MiniLM: ~250 texts/s on 2 cores), so the item
vectors are synthetic (`synthetic_vectors`, fixed seed; `--vectors items.npy` uses real ones)
and reach the recommender through `Recommender.build(known_vectors)`, the path cached catalog
vectors take. The event log is synthetic too (`synthetic_events`). Each request still embeds
the user's history text with the real encoder, as in production.

What ranks is what `recs build` serves: the sequence ensemble (`--sequence ensemble`, the
default: the text-aware member over every item, the ID-only member over the items of the event
log, as training gives them IDs) feeding the combiner's sequence feature and candidates. Its
weights are as initialised, not trained (training at this size is `bench/recs_build_scale.py`'s
subject): a request's cost depends on the shapes, not the values. `--sequence none` serves the
text, co-occurrence and popularity features alone, as before the ensemble was measured here.

The exact mode (FaissIndex with `exact_threshold` above the catalog size: IndexFlatIP) runs
first and gives the ground truth; then the approximate mode (FaissIndex's default: IVF above
20k items). Each is served by the app's own factory on a werkzeug threaded server over
loopback with an embedded redis-server; requests are sequential and each is a cache miss
(distinct users, distinct items). Reported per mode: index and recommender build seconds,
process RSS and index bytes, p50/p99 of `GET /api/recommendations` (80% users with a history,
20% new visitors) and `GET /api/items/<id>/similar`; for IVF recall@100 of the index against
exact search for the queries those routes send (item vectors, user profile vectors), at the
default nprobe and over an nprobe sweep. Writes bench/results/recs_scale.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import platform
import random
import resource
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from bench.machine import load_average
from threefold.apps.recs.catalog import Catalog, Item
from threefold.apps.recs.events import Event
from threefold.core.index import FaissIndex

RESULTS = Path(__file__).resolve().parent / "results" / "recs_scale.json"
DIMENSION = 384
TOPICS = 100
CATEGORIES = 20
LATENT = 32
# weights of the vector's parts: shared direction, topic, 32-d latent position, noise
SHARED, TOPIC, POSITION, NOISE = 0.5, 0.8, 1.0, 0.5
RECALL_K = 100
VISITOR_SHARE = 0.2
GOAL_P99_MS = 50.0
SEQUENCE_SETUP = {
    "ensemble": "the sequence ensemble recs build trains (text-aware member over every item, "
    "ID-only member over the items in the event log; SequenceConfig defaults, d=64, 2 blocks), "
    "weights as initialised: the cost of a request does not depend on them",
    "none": "no sequence model",
}
GOAL_RECALL = 0.95
# one posts an event, the others (distinct users: each a cache miss) are timed back to back
# until the rebuild it causes has finished: 400 requests outlast a 1M-item rebuild
AFTER_EVENT_USERS = 401
AFTER_EVENT_MAX_REQUESTS = 2_000  # requests timed while that event's rebuild runs, at most
DATA_DESCRIPTION = (
    f"synthetic, d={DIMENSION}, L2-normalized: item = {SHARED} x shared direction + {TOPIC} x "
    f"one of {TOPICS} topic vectors + {POSITION} x a {LATENT}-d Gaussian latent position "
    f"mapped by a fixed random {LATENT}x{DIMENSION} matrix + {NOISE} x isotropic noise, all "
    f"standard normal from numpy default_rng(seed); category = topic mod {CATEGORIES}; users "
    "browse 1-2 topics, 5-30 events each, popular items first (rank ~ uniform^3)"
)


# ----------------------------------------------------------------------------- data
def synthetic_vectors(
    n: int, *, seed: int, dimension: int = DIMENSION, chunk: int = 100_000
) -> tuple[np.ndarray, np.ndarray]:
    """(n, dimension) float32 unit vectors and each one's topic (see DATA_DESCRIPTION)."""
    rng = np.random.default_rng(seed)
    shared = rng.standard_normal(dimension, dtype=np.float32)
    topic_vectors = rng.standard_normal((TOPICS, dimension), dtype=np.float32)
    mapping = rng.standard_normal((LATENT, dimension), dtype=np.float32) / np.sqrt(LATENT)
    topics = rng.integers(0, TOPICS, n)
    vectors = np.empty((n, dimension), dtype=np.float32)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        latent = rng.standard_normal((stop - start, LATENT), dtype=np.float32)
        noise = rng.standard_normal((stop - start, dimension), dtype=np.float32)
        block = (
            SHARED * shared
            + TOPIC * topic_vectors[topics[start:stop]]
            + POSITION * (latent @ mapping)
            + NOISE * noise
        )
        vectors[start:stop] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return vectors, topics


def load_vectors(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Real item vectors from a .npy file, L2-normalized; every item in one topic."""
    vectors = np.load(path).astype(np.float32)
    if vectors.ndim != 2 or vectors.shape[1] != DIMENSION:
        raise SystemExit(
            f"{path} holds an array of shape {vectors.shape}; expected (items, {DIMENSION}), "
            "the dimension of the text encoder the requests use"
        )
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return vectors, np.zeros(len(vectors), dtype=np.int64)


def item_id(position: int) -> str:
    return f"item-{position:07d}"


def synthetic_catalog(topics: np.ndarray) -> Catalog:
    """One item per vector: a title, a category from its topic, a short description."""
    return Catalog(
        Item(
            item_id=item_id(position),
            title=f"Synthetic item {position}",
            description=f"An item about topic {topic}.",
            category=f"category-{topic % CATEGORIES:02d}",
        )
        for position, topic in enumerate(topics.tolist())
    )


def synthetic_events(topics: np.ndarray, users: int, *, seed: int) -> list[Event]:
    """Users browsing 1-2 topics, 5-30 events each, oldest first, over 60 days."""
    rng = np.random.default_rng(seed + 1)
    by_topic = [np.flatnonzero(topics == t) for t in range(TOPICS)]
    by_topic = [members for members in by_topic if len(members)]
    kinds = np.array(["view", "click", "purchase"])
    start = 1_780_000_000.0
    events: list[Event] = []
    for user in range(users):
        size = min(len(by_topic), int(rng.integers(1, 3)))
        chosen = rng.choice(len(by_topic), size=size, replace=False)
        count = int(rng.integers(5, 31))
        members = [by_topic[t] for t in chosen]
        picks = [members[rng.integers(len(members))] for _ in range(count)]
        ranks = (rng.random(count) ** 3 * np.array([len(m) for m in picks])).astype(int)
        stamps = np.sort(start + rng.random(count) * 60 * 86_400)
        kind = kinds[np.searchsorted([0.8, 0.95], rng.random(count), side="right")]
        events.extend(
            Event(f"user-{user:06d}", item_id(int(m[r])), str(k), float(s))
            for m, r, k, s in zip(picks, ranks, kind, stamps, strict=True)
        )
    return events


def data_statistics(truth: list[list[tuple[str, float]]], random_pairs: np.ndarray) -> dict:
    """Cosine of random pairs and of each item query's 1st and 100th neighbour."""
    first = [hits[1][1] for hits in truth if len(hits) > 1]  # hits[0] is the item itself
    last = [hits[-1][1] for hits in truth]
    return {
        "random_pair_cosine_mean": round(float(random_pairs.mean()), 3),
        "nearest_neighbour_cosine_mean": round(float(np.mean(first)), 3),
        "neighbour_100_cosine_mean": round(float(np.mean(last)), 3),
    }


# ----------------------------------------------------------------------------- serving
class TimedIndex(FaissIndex):
    """FaissIndex that adds up the seconds spent in `add` (the index build inside `build`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.add_seconds = 0.0

    def add(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        begin = time.perf_counter()
        super().add(ids, vectors)
        self.add_seconds += time.perf_counter() - begin


def open_app(recommender: Any, events: list[Event], redis_url: str, name: str) -> Any:
    """The recs app's factory around an already built recommender (what open_resources wires)."""
    from prometheus_client import CollectorRegistry

    from threefold.apps.recs.catalog_sync import CatalogSync
    from threefold.apps.recs.config import RecsConfig
    from threefold.apps.recs.event_ids import EventIds
    from threefold.apps.recs.history import UserHistories
    from threefold.apps.recs.list_snapshots import Snapshots
    from threefold.apps.recs.metrics import RecsMetrics
    from threefold.apps.recs.resources import Resources, open_impressions, open_redis
    from threefold.apps.recs.web import create_app
    from threefold.streaming.connections import RedisSettings

    settings = RecsConfig(
        redis_prefix=f"bench:scale:{name}:", rate_limit_per_minute=0, tune_on_start=False
    )
    registry = CollectorRegistry()
    metrics = RecsMetrics(registry)
    state = open_redis(settings, RedisSettings(url=redis_url), metrics)
    catalog_changes = CatalogSync(
        recommender, state, interval_seconds=settings.catalog_sync_seconds
    )
    catalog_changes.sync(force=True)
    impressions = open_impressions(settings, state, metrics)
    resources = Resources(
        settings=settings,
        registry=registry,
        metrics=metrics,
        redis=state,
        recommender=recommender,
        histories=UserHistories(
            events, state, limit=settings.history_limit, on_stored=impressions.attribute
        ),
        catalog_changes=catalog_changes,
        impressions=impressions,
        event_ids=EventIds(state),
        snapshots=Snapshots(state),
    )
    metrics.watch_catalog(
        lambda: recommender.item_count, lambda: recommender.statistics_rebuild_seconds
    )
    return create_app(settings, resources)


@contextmanager
def serving(app: Any, threads: int) -> Iterator[str]:
    """The app on a free loopback port; each request thread gets `threads` OpenMP threads."""
    import faiss
    from werkzeug.serving import make_server

    def handler(environ: dict[str, Any], start_response: Any) -> Any:
        if threads > 0:
            faiss.omp_set_num_threads(threads)  # OpenMP's setting is per thread
        return app(environ, start_response)

    server = make_server("127.0.0.1", 0, handler, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()


@contextmanager
def request_threads(count: int) -> Iterator[None]:
    """torch and FAISS (OpenMP) threads per operation while requests are measured (0: as is).

    Builds keep the defaults (k-means uses every core); one thread per request is what a busy
    2-core machine serves fastest (see deploy/OPERATIONS.md).
    """
    import faiss
    import torch

    before = torch.get_num_threads(), faiss.omp_get_max_threads()
    if count > 0:
        torch.set_num_threads(count)
        faiss.omp_set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before[0])
        faiss.omp_set_num_threads(before[1])


def timed_encode(encoder: Any, text: str) -> float:
    begin = time.perf_counter()
    encoder.encode([text])
    return time.perf_counter() - begin


def after_new_event(base: str, recommender: Any, users: list[str], item: str) -> dict[str, Any]:
    """Post one event, then time requests of other users, back to back, until the statistics
    rebuild it causes has finished (at least one request per user; then users repeat).

    Statistics are stale after an event; a rebuild slower than the recommender's
    `inline_rebuild_seconds` runs in a background thread, so these requests should not wait.
    """
    body = json.dumps({"user_id": users[0], "item_id": item, "event": "click"}).encode()
    post = urllib.request.Request(
        f"{base}/api/events", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(post, timeout=60) as response:
        response.read()
    time.sleep(recommender.stats_refresh_seconds)  # the rebuild is due from now on
    others, seconds = users[1:] or users[:1], []
    begin = time.perf_counter()
    while len(seconds) < len(others) or not recommender.wait_for_statistics(timeout=0):
        user = others[len(seconds) % len(others)]
        seconds.append(timed_get(f"{base}/api/recommendations?user_id={user}&k=10")[0])
        if len(seconds) >= AFTER_EVENT_MAX_REQUESTS:
            break
    return {
        "requests_during_rebuild": summary(seconds),
        "over_100_ms": int(sum(value > 0.1 for value in seconds)),
        "each_ms": [round(1000 * value, 1) for value in seconds],
        "rebuild_seconds": round(recommender.statistics_rebuild_seconds, 1),
        "rebuild_finished_after_s": round(time.perf_counter() - begin, 1),
        "rebuild_finished": recommender.wait_for_statistics(timeout=600),
    }


def timed_get(url: str) -> tuple[float, dict[str, Any]]:
    begin = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as response:
        body = response.read()
    return time.perf_counter() - begin, json.loads(body)


def summary(seconds: Sequence[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000
    return {
        "n": len(ms),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "mean_ms": round(float(ms.mean()), 2),
        "max_ms": round(float(ms.max()), 2),
    }


def measure_api(base: str, users: list[str], items: list[str]) -> dict[str, Any]:
    """Sequential cache-missing requests to both routes; latencies and the returned ids."""
    timed_get(f"{base}/api/recommendations?user_id=warm-up&k=3")
    timed_get(f"{base}/api/items/{items[-1]}/similar?k=3")
    recs, recs_ids, similar, similar_ids = [], [], [], []
    for user in users:
        seconds, body = timed_get(f"{base}/api/recommendations?user_id={user}&k=10")
        recs.append(seconds)
        recs_ids.append([hit["item_id"] for hit in body["items"]])
    for item in items:
        seconds, body = timed_get(f"{base}/api/items/{item}/similar?k=10")
        similar.append(seconds)
        similar_ids.append([hit["item_id"] for hit in body["items"]])
    return {
        "recommendations": summary(recs),
        "similar": summary(similar),
        "_ids": {"recommendations": recs_ids, "similar": similar_ids},
    }


# ----------------------------------------------------------------------------- index checks
def search_index(
    index: FaissIndex, queries: np.ndarray, timed: int
) -> tuple[list[list[tuple[str, float]]], dict[str, float]]:
    """Top-101 hits for all queries in one batch, and the time of `timed` of them one by one.

    101: an item query finds the item itself first. One at a time is how a request searches.
    """
    hits = index.search(queries, RECALL_K + 1)
    seconds = []
    for query in queries[:timed]:
        begin = time.perf_counter()
        index.search(query, RECALL_K + 1)
        seconds.append(time.perf_counter() - begin)
    return hits, summary(seconds)


def recall(found: list, truth: list) -> float:
    return float(
        np.mean(
            [
                len({h for h, _ in f} & {h for h, _ in t}) / max(len(t), 1)
                for f, t in zip(found, truth, strict=True)
            ]
        )
    )


def overlap(first: list[list[str]], second: list[list[str]]) -> float:
    """Mean share of the exact list's ids that the approximate list also returned."""
    return float(
        np.mean([len(set(a) & set(b)) / max(len(b), 1) for a, b in zip(first, second, strict=True)])
    )


# ----------------------------------------------------------------------------- machine
def rss_bytes() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class LoadSampler:
    """Samples the 1-minute load average every few seconds while the benchmark runs."""

    def __init__(self, every: float = 5.0) -> None:
        self.every = every
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            load = load_average()
            if load:
                self.samples.append(load[0])
            self._stop.wait(self.every)

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict[str, float | None]:
        if not self.samples:
            return {"mean": None, "max": None}
        return {"mean": round(float(np.mean(self.samples)), 2), "max": max(self.samples)}


# ----------------------------------------------------------------------------- main
class Workload:
    """What both modes are asked: the same recall queries and the same requests."""

    def __init__(self, catalog: Catalog, vectors: np.ndarray, events: list[Event], args) -> None:
        from threefold.apps.recs.profiles import build_profile

        rng = random.Random(args.seed)
        histories: dict[str, list[Event]] = {}
        for event in events:
            histories.setdefault(event.user_id, []).append(event)
        users = sorted(histories)
        rng.shuffle(users)
        ids = catalog.ids
        position = {item: row for row, item in enumerate(ids)}
        by_id = {item.item_id: item for item in catalog}
        self.item_queries = vectors[rng.sample(range(len(ids)), args.queries)]
        pairs = np.array([rng.sample(range(len(ids)), 2) for _ in range(2000)])
        self.random_pair_cosine = np.einsum("ij,ij->i", vectors[pairs[:, 0]], vectors[pairs[:, 1]])
        self.profile_queries = np.stack(
            [
                build_profile(
                    u, histories[u], position=position, vectors=vectors, items=by_id
                ).vector
                for u in users[: args.queries]
            ]
        )
        count = max(args.requests, args.exact_requests) + AFTER_EVENT_USERS
        visitors = round(count * VISITOR_SHARE)
        self.users = users[args.queries : args.queries + count - visitors]
        self.users += [f"visitor-{i}" for i in range(visitors)]
        rng.shuffle(self.users)
        self.items = rng.sample(ids, count)
        self.history_texts = [
            build_profile(u, histories[u], position=position, vectors=vectors, items=by_id).text
            for u in self.users[: args.timed]
            if u in histories
        ]

    def queries(self) -> Iterator[tuple[str, np.ndarray]]:
        yield "item", self.item_queries
        yield "profile", self.profile_queries


class IndexRecorder:
    """An index factory for `Recommender` that keeps the index it made (to time and inspect)."""

    def __init__(self, mode: str, n: int, exact_threshold: int | None, gpu: bool) -> None:
        self.threshold = n + 1 if mode == "exact" else exact_threshold
        self.use_gpu = None if gpu else False
        self.index: TimedIndex | None = None

    def __call__(self, dimension: int) -> TimedIndex:
        options = {"exact_threshold": self.threshold} if self.threshold else {}
        self.index = TimedIndex(dimension, use_gpu=self.use_gpu, **options)
        return self.index


def sequence_ranker(kind: str, catalog: Catalog, events: list[Event], dimension: int) -> Any:
    """`recs build`'s default sequence ensemble for this catalog, weights as initialised.

    The text-aware member represents every item; the ID-only member the items that occur in
    the event log (those training gives an ID embedding). None for `--sequence none`.
    """
    if kind == "none":
        return None
    import torch

    from threefold.apps.recs.sequence_ensemble import SequenceEnsemble
    from threefold.apps.recs.sequence_model import SequenceConfig, SequenceModel

    torch.manual_seed(0)
    trained = sorted({e.item_id for e in events})
    return SequenceEnsemble(
        [
            SequenceModel(SequenceConfig(text_dimension=dimension, use_text=use_text), trained)
            for use_text in (True, False)
        ]
    )


def run_mode(
    mode: str,
    catalog: Catalog,
    known: dict,
    events: list[Event],
    encoder: Any,
    work: Workload,
    requests: int,
    redis_url: str,
    truth: dict[str, list] | None,
    args,
) -> tuple[dict[str, Any], dict[str, list]]:
    """Build the recommender with one index mode, check the index, serve and measure it."""
    from threefold.apps.recs.recommender import Recommender

    log = logging.getLogger("bench.recs_scale")
    gc.collect()
    recorder = IndexRecorder(mode, len(catalog), args.exact_threshold, args.gpu)
    begin = time.perf_counter()
    recommender = Recommender(
        catalog,
        encoder,
        sequence=sequence_ranker(args.sequence, catalog, events, DIMENSION),
        events=events,
        index_factory=recorder,
        quantize_queries=not args.fp32_queries,
    )
    recommender.build(known)
    build_seconds = time.perf_counter() - begin
    index = recorder.index
    log.info("%s: built in %.1f s: %s %s", mode, build_seconds, index, index.ivf_lists)
    result: dict[str, Any] = {
        "index": {"kind": index.kind, **(index.ivf_lists or {})},
        "index_build_seconds": round(index.add_seconds, 1),
        "recommender_build_seconds": round(build_seconds, 1),
        "rss_bytes_after_build": rss_bytes(),
        "index_bytes": index.nbytes,
    }
    found = {}
    threads = args.request_threads[0]
    with request_threads(threads):
        for kind, queries in work.queries():
            found[kind], result[f"index_search_{kind}"] = search_index(index, queries, args.timed)
        if truth is not None:
            result["recall_at_100"] = {k: round(recall(found[k], truth[k]), 4) for k in found}
            default = index.ivf_lists
            result["nprobe_sweep"] = nprobe_sweep(index, args.nprobe, work, truth, args.timed)
            index.set_nprobe(None)
            assert index.ivf_lists == default
    # the exact mode only with the first thread count; a fresh Redis prefix keeps misses misses
    by_threads = {}
    for threads in args.request_threads if truth is not None else args.request_threads[:1]:
        app = open_app(recommender, events, redis_url, f"{mode}:{threads}")
        with request_threads(threads), serving(app, threads) as base:
            by_threads[threads] = measure_api(base, work.users[:requests], work.items[:requests])
            if truth is not None and threads == args.request_threads[0]:
                result["after_new_event"] = after_new_event(
                    base,
                    recommender,
                    work.users[requests : requests + AFTER_EVENT_USERS],
                    work.items[0],
                )
    result["api"] = by_threads[args.request_threads[0]]
    if len(by_threads) > 1:
        result["api_by_request_threads"] = {
            str(t): {k: v for k, v in api.items() if k != "_ids"} for t, api in by_threads.items()
        }
    log.info("%s: %s", mode, {k: v for k, v in result.items() if k != "api"})
    return result, found


def nprobe_sweep(
    index: FaissIndex,
    nprobes: Sequence[int],
    work: Workload,
    truth: dict[str, list],
    timed: int,
) -> list[dict[str, Any]]:
    """Recall@100 and p99 search time per query kind at each nprobe."""
    rows = []
    for nprobe in nprobes:
        index.set_nprobe(nprobe)
        row: dict[str, Any] = {"nprobe": index.ivf_lists["nprobe"]}
        for kind, queries in work.queries():
            found, seconds = search_index(index, queries, timed)
            row[f"recall_{kind}"] = round(recall(found, truth[kind]), 4)
            row[f"search_p99_ms_{kind}"] = seconds["p99_ms"]
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=20_000, help="users in the event log")
    parser.add_argument("--requests", type=int, default=300, help="per route, IVF mode")
    parser.add_argument("--exact-requests", type=int, default=100, help="per route, exact mode")
    parser.add_argument("--queries", type=int, default=500, help="per kind, for recall")
    parser.add_argument("--timed", type=int, default=50, help="of them searched one by one")
    parser.add_argument("--nprobe", type=int, nargs="*", default=[4, 8, 16, 32, 64, 128])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--request-threads",
        type=int,
        nargs="+",
        default=[1],
        help="torch/FAISS threads per request (0: as is); IVF requests are measured with each, "
        "the rest with the first",
    )
    parser.add_argument(
        "--exact-threshold", type=int, help="IVF from this many items (default: FaissIndex's)"
    )
    parser.add_argument("--vectors", type=Path, help="an (n, 384) .npy of real item vectors")
    parser.add_argument(
        "--gpu", action="store_true", help="search on the GPU when faiss-gpu has one"
    )
    parser.add_argument(
        "--fp32-queries",
        action="store_true",
        help="embed history texts with the fp32 encoder (the app's default is an int8 twin)",
    )
    parser.add_argument(
        "--sequence",
        choices=("ensemble", "none"),
        default="ensemble",
        help="serve with recs build's sequence ensemble (untrained weights) or without one",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)

    from threefold.apps.recs.ranking_features import query_encoder_for
    from threefold.core.base_model import base_model_from_env, configure_offline
    from threefold.core.embedder import Embedder
    from threefold.streaming.services import start_redis

    configure_offline()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for quiet in ("werkzeug", "threefold.recs.http"):
        logging.getLogger(quiet).setLevel(logging.WARNING)
    log = logging.getLogger("bench.recs_scale")
    started = datetime.now(timezone.utc)
    wall = time.perf_counter()
    load_at_start = load_average()
    with LoadSampler() as load:
        begin = time.perf_counter()
        if args.vectors:
            vectors, topics = load_vectors(args.vectors)
            args.items = len(vectors)
        else:
            vectors, topics = synthetic_vectors(args.items, seed=args.seed)
        catalog = synthetic_catalog(topics)
        events = synthetic_events(topics, args.users, seed=args.seed)
        known = dict(zip(catalog.ids, vectors, strict=True))
        work = Workload(catalog, vectors, events, args)
        generate_seconds = time.perf_counter() - begin
        log.info("data: %d items, %d events in %.1f s", len(catalog), len(events), generate_seconds)
        encoder = Embedder(base_model_from_env(), max_length=128).load()
        queries = query_encoder_for(encoder, not args.fp32_queries)
        encoder_seconds: dict[int, list[float]] = {}
        for threads in args.request_threads:
            with request_threads(threads):
                encoder_seconds[threads] = [timed_encode(queries, t) for t in work.history_texts]
        redis = start_redis()
        try:
            exact, truth = run_mode(
                "exact",
                catalog,
                known,
                events,
                encoder,
                work,
                args.exact_requests,
                redis.url,
                None,
                args,
            )
            approximate, _ = run_mode(
                "approximate",
                catalog,
                known,
                events,
                encoder,
                work,
                args.requests,
                redis.url,
                truth,
                args,
            )
        finally:
            redis.stop()
    result = report(
        args, work.random_pair_cosine, exact, approximate, truth, generate_seconds, len(events)
    )
    result["encoder_per_request"] = summary(encoder_seconds[args.request_threads[0]])
    if len(encoder_seconds) > 1:
        result["encoder_by_request_threads"] = {
            str(t): summary(seconds) for t, seconds in encoder_seconds.items()
        }
    result["machine"] = machine(load_at_start, load.summary(), args.request_threads[0])
    result["wall_seconds"] = round(time.perf_counter() - wall, 1)
    result["date"] = started.isoformat(timespec="seconds")
    result["command"] = " ".join(["python -m bench.recs_scale", *argv])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(markdown(result))
    return 0


def markdown(result: dict[str, Any]) -> str:
    """The README's detail table: both modes side by side, then the nprobe sweep."""
    exact, approx = result["exact"], result["approximate"]

    def row(name: str, read: Any) -> str:
        return f"| {name} | {read(exact)} | {read(approx)} |"

    def api(route: str, key: str) -> Any:
        return lambda mode: f"{mode['api'][route][key]:.1f}"

    lines = [
        "| | exact (IndexFlatIP) | IVF (nlist {nlist}, nprobe {nprobe}) |".format(
            **approx["index"]
        ),
        "| --- | --- | --- |",
        row("index build, s", lambda m: f"{m['index_build_seconds']:.1f}"),
        row("recommender build, s", lambda m: f"{m['recommender_build_seconds']:.1f}"),
        row("RSS after build, GiB", lambda m: f"{m['rss_bytes_after_build'] / 2**30:.2f}"),
        row("index, GiB", lambda m: f"{m['index_bytes'] / 2**30:.2f}"),
        row("`GET /api/recommendations` p50 ms", api("recommendations", "p50_ms")),
        row("`GET /api/recommendations` p99 ms", api("recommendations", "p99_ms")),
        row("`GET /api/items/<id>/similar` p50 ms", api("similar", "p50_ms")),
        row("`GET /api/items/<id>/similar` p99 ms", api("similar", "p99_ms")),
        row(
            "one index search p50/p99 ms (profile query, k=101)",
            lambda m: "{p50_ms:.1f} / {p99_ms:.1f}".format(**m["index_search_profile"]),
        ),
        row("requests", lambda m: str(m["api"]["recommendations"]["n"])),
        "",
    ]
    encoders = result.get("encoder_by_request_threads") or {
        str(result["machine"]["threads_per_request"]): result["encoder_per_request"]
    }
    for threads, api in (approx.get("api_by_request_threads") or {}).items():
        recs, similar, encoder = api["recommendations"], api["similar"], encoders[threads]
        lines.append(
            f"IVF with {threads} torch/FAISS thread(s) per request: recommendations p50/p99 "
            f"{recs['p50_ms']:.1f}/{recs['p99_ms']:.1f} ms, similar {similar['p50_ms']:.1f}/"
            f"{similar['p99_ms']:.1f} ms; the text encoder alone {encoder['p50_ms']:.1f}/"
            f"{encoder['p99_ms']:.1f} ms.  "
        )
    after = approx.get("after_new_event")
    if after:
        during = after["requests_during_rebuild"]
        lines.append(
            f"After a new event (IVF): {during['n']} requests back to back, from when the "
            f"statistics rebuild was due until it had finished ({after['rebuild_seconds']:.1f} s "
            f"to count, in the background) and every user had asked once: p50/p99/max "
            f"{during['p50_ms']:.1f}/{during['p99_ms']:.1f}/{during['max_ms']:.1f} ms, "
            f"{after.get('over_100_ms', '?')} over 100 ms.  "
        )
    lines += [
        "",
        "| nprobe | recall@100 item queries | recall@100 profile queries | search p99 ms |",
        "| --- | --- | --- | --- |",
    ]
    lines += [
        f"| {r['nprobe']} | {r['recall_item']:.4f} | {r['recall_profile']:.4f} | "
        f"{max(r['search_p99_ms_item'], r['search_p99_ms_profile']):.1f} |"
        for r in approx["nprobe_sweep"]
    ]
    return "\n".join(lines)


def report(
    args: argparse.Namespace,
    random_pairs: np.ndarray,
    exact: dict[str, Any],
    approximate: dict[str, Any],
    truth: dict[str, list],
    generate_seconds: float,
    events: int,
) -> dict[str, Any]:
    """The results document: data, both modes, how far their answers agree, the goal."""
    exact_ids, approximate_ids = exact["api"].pop("_ids"), approximate["api"].pop("_ids")
    agreement = {
        route: round(overlap(approximate_ids[route][: len(exact_ids[route])], exact_ids[route]), 4)
        for route in ("recommendations", "similar")
    }
    p99 = {route: approximate["api"][route]["p99_ms"] for route in ("recommendations", "similar")}
    worst_recall = min(approximate["recall_at_100"].values())
    return {
        "benchmark": "recs_scale",
        "data": {
            "items": args.items,
            "dimension": DIMENSION,
            "description": f"vectors from {args.vectors.name}"
            if args.vectors
            else DATA_DESCRIPTION,
            "seed": args.seed,
            "users": args.users,
            "events": events,
            "generate_seconds": round(generate_seconds, 1),
            **data_statistics(truth["item"], random_pairs),
        },
        "setup": (
            "Recommender.build with the synthetic vectors as known vectors; the app's factory "
            "(create_app) on a werkzeug threaded server, 1 process, loopback, embedded "
            "redis-server; sequential requests, each a cache miss (distinct users and items), "
            f"{int(VISITOR_SHARE * 100)}% of recommendation requests from new visitors (cold "
            "start); k=10; the user's history text embedded per request by the base MiniLM-L6 "
            f"encoder, {'fp32' if args.fp32_queries else 'int8 twin (the app default)'} (its "
            "time alone: encoder_per_request); default combiner weights; "
            f"{SEQUENCE_SETUP[args.sequence]}; {args.request_threads[0] or 'default'} "
            "torch/FAISS thread(s) per "
            "request; RSS is the whole benchmark process, including its own copy of the "
            "generated vectors"
        ),
        "sequence": args.sequence,
        "exact": exact,
        "approximate": approximate,
        "answers_shared_with_exact": agreement,
        "goal": {
            "p99_ms_limit": GOAL_P99_MS,
            "recall_at_100_floor": GOAL_RECALL,
            "p99_ms": p99,
            "recall_at_100": approximate["recall_at_100"],
            "met": max(p99.values()) <= GOAL_P99_MS and worst_recall >= GOAL_RECALL,
        },
    }


def machine(
    load_at_start: list[float] | None, load: dict[str, float | None], request_threads_count: int
) -> dict[str, Any]:
    import faiss
    import torch

    return {
        "cpu_count": os.cpu_count(),
        "memory_bytes": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "load_average_at_start": load_at_start,
        "load_1m_during_run": load,
        "threads_for_builds": {
            "faiss": faiss.omp_get_max_threads(),
            "torch": torch.get_num_threads(),
        },
        "threads_per_request": request_threads_count,
        "platform": platform.platform(),
        "processor": platform.processor() or _cpu_model(),
        "python": platform.python_version(),
        "faiss": faiss.__version__,
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


if __name__ == "__main__":
    raise SystemExit(main())
