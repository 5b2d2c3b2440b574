"""Several sequence rankers as one: their next-item log-probabilities averaged.

The default pair is the text-aware ranker (text + IDs) and plain ID-only SASRec. On MovieLens the
two err differently: the ID-only one ranks the popular sequel better, the text-aware one knows
items by their description. Each member's scores become log-probabilities over the items it can
represent (an ID-only member cannot score an item it never saw in training); an item's score is
the mean over the members that represent it, so a brand-new item is scored by the text-aware
member alone, on the same scale.

`save(path)` writes `ensemble.json` and one `member-<i>/` sequence-ranker folder per member;
`load_sequence_ranker(path)` opens either an ensemble or a single ranker's folder.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from threefold.apps.recs.sequence_model import SequenceModel
from threefold.core.errors import ModelError

ENSEMBLE_FILE = "ensemble.json"
FORMAT_NAME = "threefold-sequence-ensemble"


def log_probabilities(scores: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax of (users, items) scores, computed stably."""
    shifted = scores - scores.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


class SequenceEnsemble:
    """Mean next-item log-probability of its member rankers (the `SequenceModel` scoring API)."""

    def __init__(self, members: Sequence[SequenceModel], info: dict[str, Any] | None = None):
        if not members:
            raise ModelError("a sequence ensemble needs at least one member ranker")
        self.members = list(members)
        self.info = dict(info or {})

    def scores(
        self,
        histories: Sequence[Sequence[int]],
        vectors: np.ndarray,
        item_ids: Sequence[str],
        *,
        batch_size: int = 256,
        table: list[tuple[np.ndarray, Any]] | None = None,
    ) -> np.ndarray:
        """(users, items) mean log-probabilities; a user with an empty history gets zeros.

        An item no member can represent gets the row's lowest score. `table`: this ensemble's
        `item_table` of the same vectors and items (by default computed here).
        """
        total = np.zeros((len(histories), len(item_ids)), dtype=np.float64)
        counts = np.zeros(len(item_ids), dtype=np.float64)
        table = self.item_table(vectors, item_ids) if table is None else table
        for member, (known, member_table) in zip(self.members, table, strict=True):
            if not known.any():
                continue
            raw = member.scores(
                histories, vectors, item_ids, batch_size=batch_size, table=member_table
            )
            total[:, known] += log_probabilities(raw[:, known].astype(np.float64))
            counts[known] += 1
        out = total / np.maximum(counts, 1)
        if not counts.all() and counts.any():
            out[:, counts == 0] = out[:, counts > 0].min(axis=1, keepdims=True)
        out[[not len(h) for h in histories]] = 0.0
        return out.astype(np.float32)

    def item_table(
        self, vectors: np.ndarray, item_ids: Sequence[str]
    ) -> list[tuple[np.ndarray, Any]]:
        """Per member: (which items it represents, its `item_table` of them)."""
        return [
            (member.represents(item_ids), member.item_table(vectors, item_ids))
            for member in self.members
        ]

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        names = [f"member-{i}" for i in range(len(self.members))]
        for name, member in zip(names, self.members, strict=True):
            member.save(path / name)
        meta = {"format": FORMAT_NAME, "members": names, "info": self.info}
        (path / ENSEMBLE_FILE).write_text(json.dumps(meta, default=str), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> SequenceEnsemble:
        path = Path(path)
        meta = json.loads((path / ENSEMBLE_FILE).read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT_NAME or not isinstance(meta.get("members"), list):
            raise ModelError(
                f"{path / ENSEMBLE_FILE} is not a sequence ensemble (format "
                f"{meta.get('format')!r}, expected {FORMAT_NAME!r} with a members list)"
            )
        members = [SequenceModel.load(path / str(name)) for name in meta["members"]]
        return cls(members, info=meta.get("info"))


def load_sequence_ranker(path: str | Path) -> SequenceModel | SequenceEnsemble:
    """The ranker saved in `path`: an ensemble (`ensemble.json`) or a single one."""
    path = Path(path)
    if (path / ENSEMBLE_FILE).is_file():
        return SequenceEnsemble.load(path)
    return SequenceModel.load(path)
