"""Micro-batching in front of the encoder: concurrent chat requests share one forward pass.

Each request thread hands its (one or two) texts to a queue and waits; a worker thread takes
the first waiting request, collects whatever else arrives within `max_wait_ms` (up to
`max_batch` texts), encodes them together and hands every request its rows. Under load a
batch of 8 costs little more than one text, so throughput approaches the encode-bound limit;
alone, a request waits at most `max_wait_ms`. Large calls (building, edits) bypass the queue.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future

import numpy as np

from threefold.core.encoder import TextEncoder


class MicroBatchEncoder:
    """A TextEncoder that batches small concurrent `encode` calls of one underlying encoder."""

    def __init__(self, encoder: TextEncoder, *, max_wait_ms: float = 3.0, max_batch: int = 32):
        self.encoder = encoder
        self.max_wait_s = max_wait_ms / 1000.0
        self.max_batch = max_batch
        self._queue: queue.Queue[tuple[list[str], Future[np.ndarray]]] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._start_lock = threading.Lock()

    @property
    def dimension(self) -> int:
        return self.encoder.dimension

    @property
    def model_id(self) -> str:
        return self.encoder.model_id

    @property
    def weights_id(self) -> str:
        return self.encoder.weights_id

    def load(self) -> MicroBatchEncoder:
        self.encoder.load()
        return self

    def __getattr__(self, name: str):
        return getattr(self.encoder, name)  # save(), max_length... of the wrapped encoder

    def encode(
        self, texts: Sequence[str], *, batch_size: int | None = None, show_progress: bool = False
    ) -> np.ndarray:
        texts = list(texts)
        if len(texts) > self.max_batch // 4 or show_progress:
            return self.encoder.encode(texts, batch_size=batch_size, show_progress=show_progress)
        self._ensure_worker()
        future: Future[np.ndarray] = Future()
        self._queue.put((texts, future))
        return future.result()

    def _ensure_worker(self) -> None:
        if self._worker is None:
            with self._start_lock:
                if self._worker is None:
                    self._worker = threading.Thread(
                        target=self._run, name="qa-micro-batch", daemon=True
                    )
                    self._worker.start()

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            size = len(batch[0][0])
            deadline = time.monotonic() + self.max_wait_s
            while size < self.max_batch:
                remaining = deadline - time.monotonic()
                try:
                    item = self._queue.get(timeout=remaining) if remaining > 0 else None
                except queue.Empty:
                    item = None
                if item is None:
                    break
                batch.append(item)
                size += len(item[0])
            texts = [text for request, _ in batch for text in request]
            try:
                vectors = self.encoder.encode(texts, batch_size=len(texts))
            except Exception as exc:  # handed to every waiting request, which raises it
                for _, future in batch:
                    future.set_exception(exc)
                continue
            start = 0
            for request, future in batch:
                future.set_result(vectors[start : start + len(request)])
                start += len(request)
