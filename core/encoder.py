"""The text-encoder contract the apps rely on, and a cheap deterministic encoder for tests.

`Embedder` (sentence-transformers) is the real encoder; `HashingEncoder` hashes character
n-grams into a fixed number of dimensions: no model, no download, same vectors everywhere.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from threefold.core.errors import ConfigError


@runtime_checkable
class TextEncoder(Protocol):
    """Texts in, L2-normalized float32 vectors out; `model_id` changes when the vectors would."""

    @property
    def dimension(self) -> int: ...

    @property
    def model_id(self) -> str: ...

    @property
    def weights_id(self) -> str: ...

    def load(self) -> TextEncoder: ...

    def encode(
        self, texts: Sequence[str], *, batch_size: int | None = None, show_progress: bool = False
    ) -> np.ndarray: ...


class HashingEncoder:
    """Hashed character n-grams of the lowercased text, signed, summed and L2-normalized.

    Texts that share many n-grams get close vectors, so it behaves like a crude lexical
    embedding. Deterministic across processes (blake2b, not Python's salted `hash`).
    """

    def __init__(self, dimension: int = 64, *, ngram: int = 3) -> None:
        check_positive("dimension", dimension)
        check_positive("ngram", ngram)
        self._dimension = dimension
        self.ngram = ngram

    def __repr__(self) -> str:
        return f"HashingEncoder(dimension={self._dimension}, ngram={self.ngram})"

    @property
    def dimension(self) -> int:
        return self._dimension

    @property
    def model_id(self) -> str:
        return f"hashing@{self.weights_id}"

    @property
    def weights_id(self) -> str:
        """The part of `model_id` the vectors depend on: n-gram size and dimension."""
        return f"{self.ngram}gram-dim{self._dimension}"

    def load(self) -> HashingEncoder:
        """Nothing to load; returns self (for the `TextEncoder` contract)."""
        return self

    def encode(
        self, texts: Sequence[str], *, batch_size: int | None = None, show_progress: bool = False
    ) -> np.ndarray:
        """Float32 array (len(texts), dimension), each row L2-normalized."""
        items = text_list(texts)
        if batch_size is not None:
            check_positive("batch_size", batch_size)
        out = np.zeros((len(items), self._dimension), dtype=np.float32)
        for row, text in enumerate(items):
            for gram in self._ngrams(text):
                digest = int.from_bytes(
                    hashlib.blake2b(gram.encode("utf-8"), digest_size=8).digest(), "little"
                )
                sign = 1.0 if digest & 1 else -1.0
                out[row, (digest >> 1) % self._dimension] += sign
            norm = np.linalg.norm(out[row])
            if norm == 0.0:  # the n-grams cancelled out: fall back to one fixed direction
                out[row, 0], norm = 1.0, 1.0
            out[row] /= norm
        return out

    def _ngrams(self, text: str) -> list[str]:
        padded = f" {' '.join(text.lower().split())} "
        if len(padded) <= self.ngram:
            return [padded]
        return [padded[i : i + self.ngram] for i in range(len(padded) - self.ngram + 1)]


def text_list(texts: Sequence[str]) -> list[str]:
    """The texts to encode as a list; ConfigError for a single string or a non-string item."""
    if isinstance(texts, (str, bytes)):
        raise ConfigError(
            "encode() takes a sequence of texts, not a single string. Fix: encode([text])."
        )
    items = list(texts)
    for pos, text in enumerate(items):
        if not isinstance(text, str):
            raise ConfigError(
                f"encode() takes strings; item {pos} is {type(text).__name__} {text!r}."
            )
    return items


def check_positive(name: str, value: object) -> None:
    """ConfigError unless `value` is an int of at least 1 (bools are not ints here)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive int; got {value!r}.")
