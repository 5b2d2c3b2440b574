"""Alerts are a function of the data: the same stream on 1 or 4 partitions, live or as a
backlog, gives the same alert ids (pipeline + in-memory state, no broker)."""

from __future__ import annotations

import random
import zlib

import pytest

from threefold.apps.alerts.pipeline import AlertPipeline
from threefold.apps.alerts.scoring import ScoredItem
from threefold.apps.alerts.state.memory import InMemoryStateStore
from threefold.apps.alerts.surge import SurgeRule, alert_id
from threefold.apps.alerts.windows import WindowSpec

from .conftest import T0, make_scored

LATER = T0 + 365 * 24 * 3600  # the wall clock: after every event time here

RULE = SurgeRule(min_volume=10, z_threshold=2.33, share_margin=0.15, prior_share=0.2)
WINDOW_S = 300
WINDOWS = 12
# entity -> (messages per window, usual negative share, {window: negative share of a surge})
KEYS = {
    "CALM": (20, 0.1, {}),
    "SURGE": (20, 0.1, {8: 0.8}),
    "NOISY": (12, 0.3, {}),
    "NEW": (15, 0.4, {}),  # busy from the start, above the prior, never a real surge
    "LATE": (15, 0.1, {10: 0.9}),  # a real surge on a key with a short history
}


def stream(seed: int = 7) -> list[tuple[float, str, str]]:
    """(event_time, entity, sentiment), sorted by event time, with known surges."""
    rng = random.Random(seed)
    rows = []
    for entity, (per_window, share, surges) in KEYS.items():
        first = 6 if entity == "LATE" else 0
        for w in range(first, WINDOWS):
            p = surges.get(w, share)
            for _ in range(per_window):
                t = T0 + w * WINDOW_S + rng.uniform(0, WINDOW_S)
                rows.append((t, entity, "negative" if rng.random() < p else "neutral"))
    return sorted(rows)


def scored(rows: list[tuple[float, str, str]]) -> list[ScoredItem]:
    return [
        make_scored(f"m{i}", t, sentiment, topic=f"t-{entity}", entities=[entity])
        for i, (t, entity, sentiment) in enumerate(rows)
    ]


def alert_ids(partitions: int, *, max_chunk: int, seed: int, by_key: bool = False) -> set[str]:
    """Deliver the stream as a consumer of `partitions` partitions would: each partition in
    order, the partitions interleaved at random in chunks of up to `max_chunk` messages."""
    spec = WindowSpec(WINDOW_S, WINDOW_S, grace_s=30)
    pipeline = AlertPipeline(spec, RULE, InMemoryStateStore(), cooldown_s=0, clock=lambda: LATER)
    names = [f"news:{p}" for p in range(partitions)]
    pipeline.register_partitions(names)
    queues: list[list[ScoredItem]] = [[] for _ in names]
    for i, item in enumerate(scored(stream())):
        index = zlib.crc32(item.entities[0].encode()) if by_key else i
        queues[index % partitions].append(item)
    rng = random.Random(seed)
    alerts: set[str] = set()
    while any(queues):
        p = rng.choice([p for p, q in enumerate(queues) if q])
        size = rng.randint(1, max_chunk)
        chunk, queues[p] = queues[p][:size], queues[p][size:]
        alerts |= {a["alert_id"] for a in pipeline.process(chunk, [names[p]] * len(chunk)).alerts}
    end = T0 + (WINDOWS + 2) * WINDOW_S
    alerts |= {a["alert_id"] for a in pipeline.advance(dict.fromkeys(names, end)).alerts}
    return alerts


def test_the_known_surges_alert_on_one_partition() -> None:
    alerts = alert_ids(1, max_chunk=16, seed=0)
    for entity, window in (("SURGE", 8), ("LATE", 10)):
        start = T0 + window * WINDOW_S
        assert alert_id(f"entity:{entity}", start, start + WINDOW_S) in alerts
    assert not any(
        alert_id(f"entity:{entity}", T0 + w * WINDOW_S, T0 + (w + 1) * WINDOW_S) in alerts
        for entity in ("CALM", "NOISY", "NEW")
        for w in range(WINDOWS)
    ), "no false alerts on keys without a surge"


@pytest.mark.parametrize(
    ("partitions", "max_chunk", "by_key"),
    [(4, 16, False), (4, 16, True), (4, 500, False), (2, 3, False), (1, 500, False)],
    ids=["4-round-robin", "4-by-key", "4-backlog", "2-tiny-batches", "1-backlog"],
)
@pytest.mark.parametrize("seed", range(1, 21))
def test_the_same_stream_gives_the_same_alert_ids_however_it_is_partitioned(
    partitions: int, max_chunk: int, by_key: bool, seed: int
) -> None:
    assert alert_ids(partitions, max_chunk=max_chunk, seed=seed, by_key=by_key) == alert_ids(
        1, max_chunk=16, seed=0
    )
