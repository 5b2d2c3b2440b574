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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from threefold.apps.recs.sequence_model import SequenceModel
from threefold.core.errors import ModelError

ENSEMBLE_FILE = "ensemble.json"
FORMAT_NAME = "threefold-sequence-ensemble"


@dataclass(frozen=True)
class EnsembleTable:
    """An ensemble's item tables over one catalog, and how many members score each item."""

    members: list[tuple[np.ndarray | None, Any]]
    """Per member: the catalog positions it represents (None: all) and its table of them."""
    counts: np.ndarray
    """Members that represent each item (at least 1, the divisor of the summed scores)."""
    uncovered: np.ndarray
    """Items no member represents."""


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
        table: EnsembleTable | None = None,
    ) -> np.ndarray:
        """(users, items) mean log-probabilities; a user with an empty history gets zeros.

        An item no member can represent gets the row's lowest score. `table`: this ensemble's
        `item_table` of the same vectors and items (by default computed here).
        """
        import torch

        table = self.item_table(vectors, item_ids) if table is None else table
        # members over every item first: the first of them writes its scores straight into
        # `out` (at a million items each pass over the scores costs milliseconds)
        order = sorted(range(len(self.members)), key=lambda i: table.members[i][0] is not None)
        out = np.empty((len(histories), len(item_ids)), dtype=np.float32)
        if table.members[order[0]][0] is not None:
            out[:] = 0.0
        for step, i in enumerate(order):
            member, (columns, member_table) = self.members[i], table.members[i]
            if columns is not None and not len(columns):
                continue
            # a full table also serves the history lookup; a member's own columns do not
            full = member_table if columns is None else None
            states = member.user_states(
                histories, vectors, item_ids, batch_size=batch_size, table=full
            )
            with torch.inference_mode():
                for start in range(0, len(histories), batch_size):
                    rows = slice(start, start + batch_size)
                    if step == 0 and columns is None:
                        logits = torch.from_numpy(out[rows])
                        torch.matmul(states[rows], member_table.T, out=logits)
                        logits.sub_(torch.logsumexp(logits, dim=1, keepdim=True))
                        continue
                    chunk = torch.log_softmax(states[rows] @ member_table.T, dim=1).numpy()
                    if columns is None:
                        out[rows] += chunk
                    else:
                        out[rows, columns] += chunk
        out /= table.counts
        if table.uncovered.any() and not table.uncovered.all():
            out[:, table.uncovered] = out[:, ~table.uncovered].min(axis=1, keepdims=True)
        out[[not len(h) for h in histories]] = 0.0
        return out

    def item_table(self, vectors: np.ndarray, item_ids: Sequence[str]) -> EnsembleTable:
        """Per member the positions it represents (None: all) and its `item_table` of them.

        An ID-only member is scored over the items it was trained on only (at 1M items, the
        228,449 of `bench/recs_scale.py`'s event log: under a quarter of a catalog-wide table).
        """
        members: list[tuple[np.ndarray | None, Any]] = []
        counts = np.zeros(len(item_ids), dtype=np.float32)
        for member in self.members:
            known = member.represents(item_ids)
            counts += known
            if known.all():
                members.append((None, member.item_table(vectors, item_ids)))
            else:
                columns = np.flatnonzero(known)
                ids = list(map(item_ids.__getitem__, columns.tolist()))
                members.append((columns, member.item_table(vectors[columns], ids)))
        return EnsembleTable(members=members, counts=np.maximum(counts, 1), uncovered=counts == 0)

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
