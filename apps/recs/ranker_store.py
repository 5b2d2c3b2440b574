"""The trained ranker and its folder: `RankerModel.save(path)` / `RankerModel.load(path)`.

A model folder holds the fine-tuned text encoder (`encoder/`), the combiner
(`combiner.json`), the training facts (`ranker.json`), when trained, the sequence ranker
(`sequence/`) and the catalog vectors the build computed (`item_vectors.*`: the API reuses
those whose item text is unchanged instead of embedding the catalog again).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from threefold.apps.recs.candidates import DAY
from threefold.apps.recs.catalog import Item
from threefold.apps.recs.combiner import LinearCombiner
from threefold.apps.recs.item_vectors import ItemVectors
from threefold.core.errors import ModelError

COMBINER_FILE = "combiner.json"
MODEL_FILE = "ranker.json"
ENCODER_DIR = "encoder"
SEQUENCE_DIR = "sequence"
REQUIRED = (ENCODER_DIR, COMBINER_FILE, MODEL_FILE)  # what every model folder holds


def missing_files(path: Path) -> list[str]:
    """The files of `REQUIRED` that the folder `path` lacks (all of them when it is absent)."""
    return [name for name in REQUIRED if not (path / name).exists()]


@dataclass
class RankerModel:
    """A trained ranker: text encoder (core Embedder) + combiner + training facts + sequence,
    and the catalog vectors its encoder computed at build time."""

    encoder: Any
    combiner: LinearCombiner
    info: dict[str, Any] = field(default_factory=dict)
    sequence: Any = None
    item_vectors: ItemVectors | None = None

    def saved_vectors(self, items: Iterable[Item]) -> dict[str, np.ndarray]:
        """The build's vectors of those `items` whose text is unchanged, by item id."""
        if self.item_vectors is None:
            return {}
        return self.item_vectors.matching(self.encoder.weights_id, items)

    @property
    def trending_window(self) -> float:
        return float(self.info.get("trending_window_days", 14.0)) * DAY

    @property
    def neighbours(self) -> int | None:
        return self.info.get("neighbours")

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.encoder.save(path / ENCODER_DIR)
        (path / COMBINER_FILE).write_text(json.dumps(self.combiner.to_dict(), indent=2))
        (path / MODEL_FILE).write_text(json.dumps(self.info, indent=2, default=str))
        if self.sequence is not None:
            self.sequence.save(path / SEQUENCE_DIR)
        if self.item_vectors is not None:
            self.item_vectors.save(path)

    @classmethod
    def load(cls, path: str | Path, **encoder_kwargs: Any) -> RankerModel:
        from threefold.core.embedder import Embedder

        path = Path(path)
        if missing := missing_files(path):
            raise ModelError(
                f"{path} is not a recommendation model folder: missing {missing}. "
                "Fix: build one with `threefold recs build --items ... --events ... --out DIR`."
            )
        combiner = LinearCombiner.from_dict(json.loads((path / COMBINER_FILE).read_text()))
        info = json.loads((path / MODEL_FILE).read_text())
        encoder = Embedder.from_dir(path / ENCODER_DIR, **encoder_kwargs)
        sequence = None
        if (path / SEQUENCE_DIR).exists():
            from threefold.apps.recs.sequence_ensemble import load_sequence_ranker

            sequence = load_sequence_ranker(path / SEQUENCE_DIR)
        return cls(
            encoder=encoder,
            combiner=combiner,
            info=info,
            sequence=sequence,
            item_vectors=ItemVectors.load(path),
        )
