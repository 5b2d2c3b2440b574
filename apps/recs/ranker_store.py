"""The trained ranker and its folder: `RankerModel.save(path)` / `RankerModel.load(path)`.

A model folder holds the fine-tuned text encoder (`encoder/`), the combiner
(`combiner.json`), the training facts (`ranker.json`) and, when trained, the sequence ranker
(`sequence/`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from threefold.apps.recs.candidates import DAY
from threefold.apps.recs.combiner import LinearCombiner
from threefold.core.errors import ModelError

COMBINER_FILE = "combiner.json"
MODEL_FILE = "ranker.json"
ENCODER_DIR = "encoder"
SEQUENCE_DIR = "sequence"


@dataclass
class RankerModel:
    """A trained ranker: text encoder (core Embedder) + combiner + training facts + sequence."""

    encoder: Any
    combiner: LinearCombiner
    info: dict[str, Any] = field(default_factory=dict)
    sequence: Any = None

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

    @classmethod
    def load(cls, path: str | Path, **encoder_kwargs: Any) -> RankerModel:
        from threefold.core.embedder import Embedder

        path = Path(path)
        missing = [
            name for name in (ENCODER_DIR, COMBINER_FILE, MODEL_FILE) if not (path / name).exists()
        ]
        if missing:
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
        return cls(encoder=encoder, combiner=combiner, info=info, sequence=sequence)
