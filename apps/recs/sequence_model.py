"""A sequential, text-aware ranker: self-attention over the user's ordered items (SASRec).

Each item's representation is a learned projection of its text vector (from the core encoder,
so a brand-new item has one on day one: the UniSRec idea) plus a learned ID embedding for the
items seen in training (zero for new ones). The user's last `max_length` items pass through
causal self-attention blocks; the last position's output scored against every item
representation is the next-item score. With `use_text=False` it is plain ID-only SASRec.

`SequenceModel.save(path)` writes `sequence.json` (config, item vocabulary) beside
`sequence.pt` (weights); `SequenceModel.load(path)` gives identical scores.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from itertools import repeat
from pathlib import Path
from typing import Any

import numpy as np

from threefold.core.errors import ConfigError, ModelError

CONFIG_FILE = "sequence.json"
WEIGHTS_FILE = "sequence.pt"
FORMAT_NAME = "threefold-sequence-ranker"


@dataclass(frozen=True)
class SequenceConfig:
    """Architecture of the sequence ranker."""

    text_dimension: int = 384
    hidden: int = 64
    blocks: int = 2
    heads: int = 2
    max_length: int = 50
    dropout: float = 0.2
    use_text: bool = True
    use_ids: bool = True

    def __post_init__(self) -> None:
        for name in ("text_dimension", "hidden", "blocks", "heads", "max_length"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(
                    f"SequenceConfig.{name} must be a positive integer, found {value!r}"
                )
        if self.hidden % self.heads:
            raise ConfigError(
                f"SequenceConfig.hidden ({self.hidden}) must be divisible by heads ({self.heads})"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"SequenceConfig.dropout must be in [0, 1), found {self.dropout!r}")
        if not (self.use_text or self.use_ids):
            raise ConfigError("SequenceConfig needs use_text or use_ids (found both False)")


def _torch():
    import torch

    return torch


def build_network(config: SequenceConfig, vocabulary_size: int) -> Any:
    """The torch module: item encoder + positional embedding + causal transformer blocks."""
    torch = _torch()
    nn = torch.nn

    class SequenceNetwork(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            d = config.hidden
            # row 0: "no ID" (padding and items unseen in training) stays zero
            self.ids = (
                nn.Embedding(vocabulary_size + 1, d, padding_idx=0) if config.use_ids else None
            )
            self.text = (
                nn.Sequential(nn.Linear(config.text_dimension, d), nn.LayerNorm(d))
                if config.use_text
                else None
            )
            self.positions = nn.Embedding(config.max_length, d)
            layer = nn.TransformerEncoderLayer(
                d,
                config.heads,
                dim_feedforward=d,
                dropout=config.dropout,
                activation="gelu",
                batch_first=True,
                norm_first=True,
            )
            self.blocks = nn.TransformerEncoder(layer, config.blocks, enable_nested_tensor=False)
            self.norm = nn.LayerNorm(d)
            self.dropout = nn.Dropout(config.dropout)
            if self.ids is not None:
                nn.init.normal_(self.ids.weight, std=0.02)
                with torch.no_grad():
                    self.ids.weight[0].zero_()

        def items(self, text: Any, ids: Any) -> Any:
            """Representations of items given text vectors (n, D) and ID rows (n,)."""
            out = 0
            if self.text is not None:
                out = out + self.text(text)
            if self.ids is not None:
                out = out + self.ids(ids)
            return out

        def encode(self, sequences: Any, table: Any) -> Any:
            """Hidden state at every position: sequences (B, L) of rows into `table` + 1, 0 pad.

            Rows are gathered from `table` itself (padding reads row 0 and is masked below):
            prepending a zero row would copy the whole table, 256 MB per request at 1M items.
            """
            x = table[(sequences - 1).clamp(min=0)] * (config.hidden**0.5)
            length = sequences.shape[1]
            x = x + self.positions(torch.arange(length, device=sequences.device))[None]
            x = self.dropout(x) * (sequences > 0).unsqueeze(-1)
            causal = torch.triu(
                torch.full((length, length), float("-inf"), device=sequences.device), diagonal=1
            )
            x = self.blocks(x, mask=causal, is_causal=True)
            return self.norm(x)

    return SequenceNetwork()


class SequenceModel:
    """Next-item scores from the ordered history; items are known by id and text vector."""

    def __init__(
        self,
        config: SequenceConfig,
        item_ids: Sequence[str],
        network: Any = None,
        info: dict[str, Any] | None = None,
    ) -> None:
        self.config = config
        self.item_ids = list(item_ids)
        self.vocabulary = {item_id: i + 1 for i, item_id in enumerate(self.item_ids)}
        self.network = network if network is not None else build_network(config, len(item_ids))
        self.info = dict(info or {})

    def _evaluating(self) -> None:
        """Dropout off; `eval()` walks every module, so only when training left it on."""
        if self.network.training:
            self.network.eval()

    def id_rows(self, item_ids: Sequence[str]) -> np.ndarray:
        """ID-embedding row of each item (0 for items the model never saw in training)."""
        return np.fromiter(map(self.vocabulary.get, item_ids, repeat(0)), np.int64, len(item_ids))

    def represents(self, item_ids: Sequence[str]) -> np.ndarray:
        """Which items this model can score: all with text, else those with an ID embedding."""
        if self.config.use_text:
            return np.ones(len(item_ids), dtype=bool)
        return self.id_rows(item_ids) > 0

    def item_table(self, vectors: np.ndarray, item_ids: Sequence[str]) -> Any:
        """Every item's representation (items, hidden): what `scores` multiplies the user state
        by. Pass it back to `scores` (`table=`) to score many requests over the same items."""
        torch = _torch()
        if not len(item_ids):
            return torch.zeros((0, self.config.hidden))
        if self.config.use_text and vectors.shape[1] != self.config.text_dimension:
            raise ModelError(
                f"item vectors have {vectors.shape[1]} dimensions; this sequence model was "
                f"trained on {self.config.text_dimension}. Use the encoder it was trained with."
            )
        text = torch.as_tensor(np.ascontiguousarray(vectors, dtype=np.float32))
        ids = torch.as_tensor(self.id_rows(item_ids))
        self._evaluating()
        with torch.inference_mode():
            return self.network.items(text, ids)

    def pack(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        """Left-padded (users, max_length) matrix of history positions + 1 (0 = padding)."""
        length = self.config.max_length
        out = np.zeros((len(histories), length), dtype=np.int64)
        for row, history in enumerate(histories):
            tail = list(history)[-length:]
            if tail:
                out[row, length - len(tail) :] = np.asarray(tail, dtype=np.int64) + 1
        return out

    def user_states(
        self,
        histories: Sequence[Sequence[int]],
        vectors: np.ndarray,
        item_ids: Sequence[str],
        *,
        batch_size: int = 256,
        table: Any = None,
    ) -> Any:
        """(users, hidden) state after each history, the query `scores` multiplies by the items.

        History items are read from `table` (this model's `item_table` of the same vectors and
        items) or, without one, only the histories' own items are computed, not the catalog.
        """
        torch = _torch()
        packed = self.pack(histories)
        if table is None:
            used = np.unique(packed[packed > 0]) - 1
            table = self.item_table(vectors[used], [item_ids[p] for p in used])
            rows = np.zeros(len(item_ids) + 1, dtype=np.int64)
            rows[used + 1] = np.arange(1, len(used) + 1)
            packed = rows[packed]
        states = torch.zeros((len(histories), self.config.hidden))
        self._evaluating()
        with torch.inference_mode():
            for start in range(0, len(histories), batch_size):
                chunk = torch.as_tensor(packed[start : start + batch_size])
                if len(table):
                    states[start : start + len(chunk)] = self.network.encode(chunk, table)[:, -1]
        return states

    def scores(
        self,
        histories: Sequence[Sequence[int]],
        vectors: np.ndarray,
        item_ids: Sequence[str],
        *,
        batch_size: int = 256,
        table: Any = None,
    ) -> np.ndarray:
        """(users, items) next-item scores; histories are positions into `vectors`/`item_ids`.

        A user with an empty history gets zeros. `table`: this model's `item_table` of the same
        vectors and items, computed earlier (by default it is computed here).
        """
        if not len(item_ids):
            return np.zeros((len(histories), 0), dtype=np.float32)
        table = self.item_table(vectors, item_ids) if table is None else table
        states = self.user_states(histories, vectors, item_ids, batch_size=batch_size, table=table)
        out = np.zeros((len(histories), len(item_ids)), dtype=np.float32)
        with _torch().inference_mode():
            for start in range(0, len(histories), batch_size):
                chunk = states[start : start + batch_size]
                out[start : start + len(chunk)] = (chunk @ table.T).numpy()
        out[[not len(h) for h in histories]] = 0.0
        return out

    def save(self, path: str | Path) -> None:
        torch = _torch()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        torch.save(self.network.state_dict(), path / WEIGHTS_FILE)
        meta = {
            "format": FORMAT_NAME,
            "config": asdict(self.config),
            "item_ids": self.item_ids,
            "info": self.info,
        }
        (path / CONFIG_FILE).write_text(json.dumps(meta, default=str), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> SequenceModel:
        torch = _torch()
        path = Path(path)
        missing = [name for name in (CONFIG_FILE, WEIGHTS_FILE) if not (path / name).is_file()]
        if missing:
            raise ModelError(
                f"{path} is not a sequence-ranker folder: missing {missing}. Fix: train one with "
                "`threefold recs build --sequence ...` or point at the folder that holds them."
            )
        meta = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT_NAME:
            raise ModelError(
                f"{path / CONFIG_FILE} has format {meta.get('format')!r}; expected {FORMAT_NAME!r}"
            )
        model = cls(SequenceConfig(**meta["config"]), meta["item_ids"], info=meta.get("info"))
        state = torch.load(path / WEIGHTS_FILE, map_location="cpu", weights_only=True)
        model.network.load_state_dict(state)
        model.network.eval()
        return model
