"""Catalog vectors kept with a digest of the text they were computed from.

A stored vector is reused only for an item whose text still has that digest: a title or
description edited in the items file between two starts is embedded again instead of being
served with its old vector. `recs build` saves the vectors it computed into the model folder
(`ItemVectors.save`), so the first API start after a build embeds nothing it already has.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from threefold.apps.recs.catalog import Item
from threefold.core.errors import ModelError

DIGEST_BYTES = 16
VECTORS_FILE = "item_vectors.npy"
KEYS_FILE = "item_vectors_keys.npz"


def text_digest(text: str) -> bytes:
    """A 16-byte digest of an item's embedded text."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=DIGEST_BYTES).digest()


@dataclass(frozen=True)
class ItemVectors:
    """Vectors of items by id (row i is `ids[i]`), each with its text's digest, computed by the
    encoder whose `weights_id` is `encoder_id`."""

    encoder_id: str
    ids: list[str]
    digests: np.ndarray  # (items, DIGEST_BYTES) uint8
    matrix: np.ndarray  # (items, dimension) float32

    @classmethod
    def of(cls, encoder_id: str, items: Sequence[Item], matrix: np.ndarray) -> ItemVectors:
        """The vectors `matrix` (row i embeds `items[i].text`) with their items' digests."""
        if len(items) != len(matrix):
            raise ModelError(f"{len(items)} items but {len(matrix)} vectors: they must align")
        digests = np.frombuffer(b"".join(text_digest(item.text) for item in items), np.uint8)
        return cls(
            encoder_id,
            [item.item_id for item in items],
            digests.reshape(len(items), DIGEST_BYTES),
            np.asarray(matrix, dtype=np.float32),
        )

    def matching(self, encoder_id: str, items: Iterable[Item]) -> dict[str, np.ndarray]:
        """Vectors of those `items` whose text is the one embedded, by item id; none when
        `encoder_id` (the serving encoder's `weights_id`) is not the one that computed them."""
        if encoder_id != self.encoder_id:
            return {}
        row = {item_id: i for i, item_id in enumerate(self.ids)}
        found: dict[str, np.ndarray] = {}
        for item in items:
            i = row.get(item.item_id)
            if i is not None and self.digests[i].tobytes() == text_digest(item.text):
                found[item.item_id] = self.matrix[i]
        return found

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        np.save(folder / VECTORS_FILE, self.matrix)
        np.savez(
            folder / KEYS_FILE,
            encoder_id=np.array(self.encoder_id),
            ids=np.array(self.ids, dtype=str),
            digests=self.digests,
        )

    @classmethod
    def load(cls, folder: str | Path) -> ItemVectors | None:
        """The saved vectors of a model folder (memory-mapped), or None when it has none."""
        folder = Path(folder)
        if not (folder / VECTORS_FILE).is_file() or not (folder / KEYS_FILE).is_file():
            return None
        matrix = np.load(folder / VECTORS_FILE, mmap_mode="r")
        with np.load(folder / KEYS_FILE) as keys:
            encoder_id, ids = str(keys["encoder_id"]), keys["ids"].tolist()
            digests = keys["digests"]
        if digests.shape != (len(ids), DIGEST_BYTES) or len(matrix) != len(ids):
            raise ModelError(
                f"{folder / KEYS_FILE} names {len(ids)} items with digests of shape "
                f"{digests.shape} for {len(matrix)} vectors in {folder / VECTORS_FILE}; "
                "they must align. Fix: delete both files (the API embeds the catalog instead) "
                "or build the model again."
            )
        return cls(encoder_id, ids, digests, matrix)
