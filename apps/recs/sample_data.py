"""Seeded generator of the shipped demo event log (data/events.csv).

Users have one favourite category and one secondary one; within a category a few items are
far more popular (Zipf) and sessions are coherent (an item sharing tags with the previous one
is likelier); some items are usually followed by a companion ("bought together"); a view may
lead to a click and a click to a purchase. Same seed, same file.

    python -m threefold.apps.recs.sample_data --out apps/recs/data/events.csv
    python -m threefold.apps.recs.sample_data --users 150 --seed 11 --user-prefix g \
        --out apps/recs/data/gate_events.csv   # the retrain gate set: users no training sees
"""

from __future__ import annotations

import argparse
import csv
import random
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from threefold.apps.recs.catalog import Catalog, Item, load_catalog
from threefold.apps.recs.config import DEFAULT_EVENTS, DEFAULT_ITEMS

COMPANIONS: dict[str, tuple[str, ...]] = {
    "kt-003": ("kt-002", "kt-008"),
    "kt-002": ("kt-010", "kt-009"),
    "kt-006": ("kt-007", "bk-005"),
    "kt-007": ("kt-006",),
    "kt-004": ("kt-012", "kt-005"),
    "kt-001": ("bk-011",),
    "od-001": ("od-002", "od-003"),
    "od-002": ("od-003",),
    "od-006": ("od-008",),
    "od-009": ("od-005", "el-007"),
    "el-005": ("el-011", "bk-008"),
    "el-001": ("el-006",),
    "el-004": ("bk-001", "bk-003"),
    "bt-001": ("bt-003", "bt-002"),
    "bt-010": ("bt-004",),
    "bt-006": ("bt-005", "bt-011"),
    "bt-007": ("bt-008", "bt-009"),
    "ty-004": ("ty-010",),
    "ty-002": ("ty-005",),
    "bk-010": ("od-009",),
    "bk-012": ("ty-007",),
}
SESSION_AFFINITY = 4.0  # items sharing tags with the previous one are this much likelier, per tag
START = datetime(2026, 10, 1, 9, 0, tzinfo=timezone.utc).timestamp()
FIELDS = ("user_id", "item_id", "event", "timestamp")


def generate_events(
    catalog: Catalog, *, users: int = 80, seed: int = 7, user_prefix: str = "u"
) -> list[dict[str, object]]:
    """Events (oldest first per user) as CSV-ready dicts; users are `<user_prefix>001`, ..."""
    rng = random.Random(seed)
    by_category: dict[str, list[Item]] = {}
    for item in catalog:
        by_category.setdefault(item.category, []).append(item)
    categories = sorted(by_category)
    popularity = {
        category: [1.0 / (rank + 1) ** 0.9 for rank in range(len(items))]
        for category, items in by_category.items()
    }
    for items in by_category.values():
        rng.shuffle(items)
    rows: list[dict[str, object]] = []
    for number in range(1, users + 1):
        favourite, secondary = rng.sample(categories, 2)
        user_id = f"{user_prefix}{number:03d}"
        clock = START + rng.uniform(0, 20) * 86_400
        wanted = rng.randint(6, 18)
        seen: list[str] = []
        previous: str | None = None
        attempts = 0
        while len(seen) < wanted and attempts < 1000:
            attempts += 1
            item = _next_item(rng, catalog, by_category, popularity, favourite, secondary, previous)
            if item.item_id in seen:
                continue
            seen.append(item.item_id)
            clock += rng.uniform(60, 900) if rng.random() < 0.8 else rng.uniform(1, 4) * 86_400
            rows.append(_row(user_id, item.item_id, "view", clock))
            if rng.random() < 0.45:
                clock += rng.uniform(5, 120)
                rows.append(_row(user_id, item.item_id, "click", clock))
                if rng.random() < 0.35:
                    clock += rng.uniform(30, 600)
                    rows.append(_row(user_id, item.item_id, "purchase", clock))
            previous = item.item_id
    rows.sort(key=lambda r: (float(r["timestamp"]), str(r["user_id"])))
    return rows


def _next_item(
    rng: random.Random,
    catalog: Catalog,
    by_category: dict[str, list[Item]],
    popularity: dict[str, list[float]],
    favourite: str,
    secondary: str,
    previous: str | None,
) -> Item:
    companions = COMPANIONS.get(previous or "", ())
    if companions and rng.random() < 0.55:
        return catalog[rng.choice(companions)]
    roll = rng.random()
    if roll < 0.65:
        category = favourite
    elif roll < 0.9:
        category = secondary
    else:
        category = rng.choice(sorted(by_category))
    before = set(catalog[previous].tags) if previous else set()
    weights = [
        weight * (1.0 + SESSION_AFFINITY * len(before & set(item.tags)))
        for item, weight in zip(by_category[category], popularity[category], strict=True)
    ]
    return rng.choices(by_category[category], weights=weights)[0]


def _row(user_id: str, item_id: str, event: str, timestamp: float) -> dict[str, object]:
    return {"user_id": user_id, "item_id": item_id, "event": event, "timestamp": int(timestamp)}


def write_events(rows: Sequence[dict[str, object]], path: str | Path) -> None:
    with Path(path).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", default=str(DEFAULT_ITEMS))
    parser.add_argument("--out", default=str(DEFAULT_EVENTS))
    parser.add_argument("--users", type=int, default=80)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--user-prefix", default="u", help="'g' for the gate set's own users")
    args = parser.parse_args(argv)
    rows = generate_events(
        load_catalog(args.items), users=args.users, seed=args.seed, user_prefix=args.user_prefix
    )
    write_events(rows, args.out)
    print(f"wrote {len(rows)} events to {args.out}")


if __name__ == "__main__":
    main()
