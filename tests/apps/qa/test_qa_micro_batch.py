"""Micro-batching: concurrent small encode calls share forward passes and get their own rows."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import numpy as np
import pytest

from threefold.apps.qa.micro_batch import MicroBatchEncoder
from threefold.core.encoder import HashingEncoder


class SlowCountingEncoder(HashingEncoder):
    """A hashing encoder that takes 20 ms per call and counts its calls (a test double)."""

    def __init__(self) -> None:
        super().__init__(32)
        self.calls: list[int] = []

    def encode(self, texts: Sequence[str], **kwargs: object) -> np.ndarray:
        self.calls.append(len(texts))
        time.sleep(0.02)
        return super().encode(texts)


def test_concurrent_requests_are_encoded_together_and_each_gets_its_rows() -> None:
    inner = SlowCountingEncoder()
    batched = MicroBatchEncoder(inner, max_wait_ms=10)
    texts = [f"question number {i}" for i in range(8)]
    results: dict[int, np.ndarray] = {}
    barrier = threading.Barrier(len(texts))

    def ask(i: int) -> None:
        barrier.wait()
        results[i] = batched.encode([texts[i]])

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(texts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    expected = HashingEncoder(32).encode(texts)
    for i in range(len(texts)):
        np.testing.assert_allclose(results[i][0], expected[i])
    assert len(inner.calls) < len(texts)  # fewer forward passes than requests
    assert sum(inner.calls) == len(texts)
    assert batched.weights_id == inner.weights_id  # a bot loads with it like with the encoder


def test_large_calls_bypass_the_queue_and_errors_reach_the_caller() -> None:
    inner = SlowCountingEncoder()
    batched = MicroBatchEncoder(inner)
    batched.encode([f"t{i}" for i in range(100)])
    assert inner.calls == [100]

    class Broken(HashingEncoder):
        def encode(self, texts: Sequence[str], **kwargs: object) -> np.ndarray:
            raise RuntimeError("encoder is down")

    with pytest.raises(RuntimeError, match="encoder is down"):
        MicroBatchEncoder(Broken()).encode(["hello"])
