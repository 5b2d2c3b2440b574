"""Where the recommendation benchmarks read their data: a folder with items and interactions."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

DEFAULT_DATA = Path("/work/shared/data/rec/movielens100k")


def recs_data_files(folder: Path) -> tuple[Path, Path]:
    """(items.csv, interactions.csv) in `folder`; exits with what is missing when they are not."""
    items_csv, interactions_csv = folder / "items.csv", folder / "interactions.csv"
    if not items_csv.is_file() or not interactions_csv.is_file():
        sys.exit(
            f"benchmark data not found in {folder}: needs items.csv and interactions.csv "
            "(MovieLens-100k in ../shared/data/rec/movielens100k). Pass --data DIR."
        )
    return items_csv, interactions_csv


def load_recs_data(folder: Path) -> tuple[Any, list[Any]]:
    """The catalog and the interaction events of `folder` (see `recs_data_files`)."""
    from threefold.apps.recs.catalog import load_catalog
    from threefold.apps.recs.events import load_events

    items_csv, interactions_csv = recs_data_files(folder)
    catalog = load_catalog(items_csv)
    return catalog, load_events(interactions_csv, known_items=catalog)
