"""Sentence embeddings: normalized, batched vectors from a sentence-transformers model.

The default model is the packaged all-MiniLM-L6-v2 (see `base_model.resolve_base_model`). Any
local sentence-transformers folder works, and so does a plain Hugging Face encoder folder
(e.g. a BERT checkpoint): sentence-transformers then adds mean pooling. Vectors are always
L2-normalized float32, so an inner product is a cosine similarity.

Behaviour worth knowing:
- Text longer than `max_length` tokens is truncated, not rejected.
- An empty string is embedded like any other text (it becomes just the special tokens).
- `quantize=True` applies int8 dynamic quantization to the Linear layers for faster CPU
  inference (vectors differ slightly from fp32; `model_id` differs too). Training and saving
  always use the fp32 weights.
- `encode` and `fine_tune` take a lock, so one Embedder can be shared by web-server threads.
- A folder without its tokenizer files is refused (ModelError), and `max_length` is capped at
  the tokens the model accepts (`base_model.position_limit`: RoBERTa-style models reserve
  pad_token_id + 1 positions).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from threefold.core.base_model import (
    check_tokenizer,
    clear_embedding_index_errors,
    packaged_model_path,
    position_limit,
    resolve_base_model,
)
from threefold.core.device import torch_device
from threefold.core.encoder import check_positive, text_list
from threefold.core.errors import ConfigError, DataError, ModelError, first_line
from threefold.core.files import read_json, write_json_atomic
from threefold.core.training_rng import keeps_global_rngs

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

META_FILE = "threefold_embedder.json"
FORMAT_NAME = "threefold-embedder"
FORMAT_VERSION = 1


class Embedder:
    """Normalized sentence embeddings from a sentence-transformers model (default: MiniLM).

    The real `TextEncoder` (see `threefold.core.encoder`).
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        device: str | None = None,
        batch_size: int = 64,
        max_length: int = 256,
        quantize: bool = False,
    ) -> None:
        check_positive("batch_size", batch_size)
        check_positive("max_length", max_length)
        self.model = None if model is None else str(model)
        self.requested_device = device
        self.batch_size = batch_size
        self.max_length = max_length
        self.quantize = bool(quantize)
        self.base_model: str | None = None
        self.fine_tune_stats: dict | None = None
        self.device: str | None = None
        self._location: str | None = None
        self._model: SentenceTransformer | None = None
        self._inference: SentenceTransformer | None = None
        self._fingerprint: str | None = None
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        state = "loaded" if self._model is not None else "not loaded"
        device = self.device or self.requested_device
        return (
            f"Embedder({self.model or 'default'!r}, device={device!r}, "
            f"max_length={self.max_length}, quantize={self.quantize}, {state})"
        )

    # --------------------------------------------------------------------- loading
    def load(self) -> Embedder:
        """Load the weights (once; later calls return at once). Returns self."""
        with self._lock:
            if self._model is not None:
                return self
            device = torch_device(self.requested_device)
            if self.quantize and device != "cpu":
                raise ConfigError(
                    f"quantize=True works on the CPU only, but device is {device!r}. "
                    "Fix: pass device='cpu', or quantize=False on a GPU."
                )
            location = resolve_base_model(self.model)
            model = _load_sentence_transformer(location, device)
            self._set_max_length(model)
            self._model = model
            self._location = location
            self.device = device
            if self.base_model is None:
                self.base_model = location
            self._inference = self._quantized(model) if self.quantize else model
            logger.info(
                "loaded embedder %s on %s (dimension %d, max_length %d, int8 %s)",
                location,
                device,
                self.dimension,
                self.max_length,
                self.quantize,
            )
            return self

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def dimension(self) -> int:
        """Embedding size (384 for MiniLM); loads the model if needed."""
        model = self._loaded_model()
        dim = model.get_embedding_dimension()
        if dim is None:
            raise ModelError(
                f"model {self._location!r} does not report an embedding dimension. "
                "Fix: use a sentence-transformers model or an encoder with a hidden size."
            )
        return int(dim)

    @property
    def model_id(self) -> str:
        """Stable identifier for caches: model name, weight fingerprint, max_length, int8 flag.

        Two embedders with the same id produce the same vectors; fine-tuning changes it.
        """
        return f"{_display_name(self._location)}@{self.weights_id}"

    @property
    def weights_id(self) -> str:
        """What the vectors depend on: weight fingerprint, max_length, int8 flag (not the name).

        A saved copy of a model has another folder name but the same `weights_id`.
        """
        with self._lock:
            self._loaded_model()
            if self._fingerprint is None:
                self._fingerprint = _fingerprint(self._model)
            suffix = "-int8" if self.quantize else ""
            return f"{self._fingerprint}-len{self.max_length}{suffix}"

    def quantized_twin(self) -> Embedder:
        """An int8 copy of this (fp32, CPU) embedder for fast single queries; loads if needed.

        Its vectors differ slightly from this embedder's (cosine ~0.97 on MiniLM), so use it
        for queries scored against vectors this embedder made, where a measured loss is
        acceptable. It keeps its own weights: later fine-tuning of this embedder does not
        reach it.
        """
        with self._lock:
            model = self._loaded_model()
            if self.device != "cpu":
                raise ConfigError(
                    f"an int8 twin works on the CPU only, but this embedder runs on "
                    f"{self.device!r}. Fix: keep fp32 queries on a GPU."
                )
            if self.quantize:
                return self
            twin = Embedder(self.model, device="cpu", batch_size=self.batch_size, quantize=True)
            twin.max_length = self.max_length
            twin.base_model, twin.fine_tune_stats = self.base_model, self.fine_tune_stats
            twin._location, twin.device, twin._model = self._location, "cpu", model
            twin._fingerprint = self._fingerprint or _fingerprint(model)
            twin._inference = self._quantized(model)
            return twin

    # -------------------------------------------------------------------- encoding
    @clear_embedding_index_errors
    def encode(
        self,
        texts: Sequence[str],
        *,
        batch_size: int | None = None,
        show_progress: bool = False,
    ) -> np.ndarray:
        """Embed texts: float32 array (len(texts), dimension), each row L2-normalized."""
        items = text_list(texts)
        if batch_size is not None:
            check_positive("batch_size", batch_size)
        with self._lock:
            self._loaded_model()
            if not items:
                return np.zeros((0, self.dimension), dtype=np.float32)
            vectors = self._inference.encode(
                items,
                batch_size=batch_size or self.batch_size,
                show_progress_bar=show_progress,
                convert_to_numpy=True,
                normalize_embeddings=True,
            )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    # ----------------------------------------------------------------- fine-tuning
    @keeps_global_rngs
    @clear_embedding_index_errors
    def fine_tune(
        self,
        pairs: Sequence[tuple[str, str]],
        *,
        epochs: int = 1,
        batch_size: int = 32,
        learning_rate: float = 2e-5,
        max_steps: int | None = None,
        show_progress: bool = True,
        seed: int = 42,
    ) -> dict:
        """Fine-tune on (anchor, positive) pairs with in-batch negatives.

        Uses sentence-transformers' SentenceTransformerTrainer with MultipleNegativesRankingLoss
        and a no-duplicates batch sampler (a batch never holds the same text twice, so no pair
        is pushed away from its own duplicate). Returns training stats, also kept in
        `fine_tune_stats` and written by `save`.
        """
        checked = _check_pairs(pairs)
        check_positive("epochs", epochs)
        check_positive("batch_size", batch_size)
        if batch_size < 2:
            raise ConfigError("batch_size must be at least 2: in-batch negatives need a batch.")
        if max_steps is not None:
            check_positive("max_steps", max_steps)
        if not (isinstance(learning_rate, (int, float)) and 0 < learning_rate < 1):
            raise ConfigError(f"learning_rate must be in (0, 1); got {learning_rate!r}.")
        if self.quantize:
            raise ConfigError(
                "this Embedder was created with quantize=True; int8 weights cannot be trained. "
                "Fix: fine-tune an Embedder with quantize=False, save it, then load it quantized."
            )
        trainer_cls, args_cls, loss_cls, samplers, dataset_cls = _training_imports()
        with self._lock:
            model = self._loaded_model()
            dataset = dataset_cls.from_dict(
                {"anchor": [a for a, _ in checked], "positive": [p for _, p in checked]}
            )
            started = time.perf_counter()
            with tempfile.TemporaryDirectory(prefix="threefold-embedder-") as out:
                args = args_cls(
                    output_dir=out,
                    num_train_epochs=epochs,
                    max_steps=max_steps if max_steps is not None else -1,
                    per_device_train_batch_size=batch_size,
                    learning_rate=learning_rate,
                    warmup_steps=_warmup_steps(len(checked), batch_size, epochs, max_steps),
                    batch_sampler=samplers.NO_DUPLICATES,
                    save_strategy="no",
                    logging_strategy="steps",
                    logging_steps=10,
                    report_to="none",
                    disable_tqdm=not show_progress,
                    seed=seed,
                    use_cpu=self.device == "cpu",
                )
                trainer = trainer_cls(
                    model=model, args=args, train_dataset=dataset, loss=loss_cls(model)
                )
                # the trainer prints loss dicts to stdout, which CLIs keep for their JSON result
                with contextlib.redirect_stdout(sys.stderr):
                    result = trainer.train()
            model.eval()
            seconds = time.perf_counter() - started
            stats = {
                "loss": "MultipleNegativesRankingLoss",
                "pairs": len(checked),
                "epochs": epochs,
                "max_steps": max_steps,
                "steps": int(result.global_step),
                "batch_size": batch_size,
                "learning_rate": learning_rate,
                "train_loss": float(result.training_loss),
                "seconds": round(seconds, 3),
            }
            previous = (self.fine_tune_stats or {}).get("history", [])
            self.fine_tune_stats = {**stats, "history": [*previous, stats]}
            self._fingerprint = None
        logger.info(
            "fine-tuned embedder on %d pairs: %d steps, loss %.4f, %.1fs",
            len(checked),
            stats["steps"],
            stats["train_loss"],
            seconds,
        )
        return stats

    # ------------------------------------------------------------------ save/load
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write a sentence-transformers folder plus threefold_embedder.json (fp32 weights)."""
        folder = Path(path)
        with self._lock:
            model = self._loaded_model()
            folder.mkdir(parents=True, exist_ok=True)
            model.save(str(folder), create_model_card=False)
            meta = {
                "format": FORMAT_NAME,
                "version": FORMAT_VERSION,
                "base_model": self.base_model,
                "dimension": self.dimension,
                "max_length": self.max_length,
                "normalized": True,
                "fingerprint": _fingerprint(model),
                "fine_tune": self.fine_tune_stats,
            }
        write_json_atomic(folder / META_FILE, meta)
        logger.info("saved embedder to %s", folder)

    @classmethod
    def from_dir(cls, path: str | os.PathLike[str], **kw: Any) -> Embedder:
        """Load an embedder saved by `save` (or any sentence-transformers folder); loaded."""
        folder = Path(path)
        if not folder.is_dir():
            raise ModelError(
                f"embedder directory {str(folder)!r} does not exist. Fix: pass the folder "
                "written by Embedder.save."
            )
        meta: dict = {}
        meta_path = folder / META_FILE
        if meta_path.is_file():
            meta = read_json(meta_path, "the embedder")
            if meta.get("format") != FORMAT_NAME:
                raise ModelError(
                    f"{meta_path} is not a threefold embedder description (expected "
                    f"format {FORMAT_NAME!r}). Fix: save the embedder again."
                )
        if "max_length" in meta:
            kw.setdefault("max_length", int(meta["max_length"]))
        embedder = cls(str(folder), **kw)
        embedder.base_model = meta.get("base_model")
        embedder.fine_tune_stats = meta.get("fine_tune")
        embedder.load()
        expected = meta.get("dimension")
        if expected is not None and int(expected) != embedder.dimension:
            raise ModelError(
                f"{meta_path} says dimension {expected} but the weights in {folder} give "
                f"{embedder.dimension}. Fix: save the embedder again."
            )
        if meta:
            embedder._check_fingerprint(meta.get("fingerprint"), meta_path)
        return embedder

    # ------------------------------------------------------------------ internals
    def _check_fingerprint(self, recorded: object, meta_path: Path) -> None:
        """ModelError when the loaded weights are not the ones `save` recorded in `meta_path`."""
        if not isinstance(recorded, str):
            logger.warning(
                "%s records no weights fingerprint (saved by an older threefold), so damaged "
                "weights in %s cannot be detected. Fix: load and save the embedder again",
                meta_path,
                meta_path.parent,
            )
            return
        found = _fingerprint(self._model)
        if found != recorded:
            raise ModelError(
                f"the weights in {meta_path.parent} have fingerprint {found}, but {meta_path} "
                f"records {recorded}: they were changed or damaged after saving (a flipped bit, "
                "a half-copied or replaced model.safetensors). Fix: restore the whole folder "
                "from a good copy, or rebuild it."
            )
        self._fingerprint = found

    def _loaded_model(self) -> SentenceTransformer:
        if self._model is None:
            self.load()
        return self._model

    def _set_max_length(self, model: SentenceTransformer) -> None:
        limit = position_limit(_transformer_config(model))
        if limit is not None and self.max_length > limit:
            logger.warning(
                "max_length %d exceeds the %d tokens the model accepts; using %d",
                self.max_length,
                limit,
                limit,
            )
            self.max_length = limit
        model.max_seq_length = self.max_length

    @staticmethod
    def _quantized(model: SentenceTransformer) -> SentenceTransformer:
        import torch
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        # Per-channel weight scales keep cosine to the fp32 vectors near 0.97-0.98 on MiniLM;
        # per-tensor scales drop it to about 0.92-0.95.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*quantiz.*deprecated", category=UserWarning)
            return quantize_dynamic(
                model, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8
            )


def _load_sentence_transformer(location: str, device: str) -> SentenceTransformer:
    from sentence_transformers import SentenceTransformer

    local = os.path.isdir(location)
    try:
        model = SentenceTransformer(location, device=device, local_files_only=True)
    except Exception as exc:  # any failure inside the model folder is a bad model for the user
        what = f"model directory {location}" if local else f"hub model {location!r}"
        raise ModelError(
            f"could not load {what} as a sentence-transformers or Hugging Face encoder: "
            f"{type(exc).__name__}: {first_line(exc)}. Fix: check that the folder holds a "
            "complete model (config.json, weights, tokenizer), or leave the model unset to use "
            "the packaged all-MiniLM-L6-v2."
        ) from exc
    config = _transformer_config(model)
    tokenizer = getattr(model[0], "tokenizer", None)
    if config is not None and tokenizer is not None:
        check_tokenizer(location, tokenizer, config)
    model.eval()
    return model


def _display_name(location: str) -> str:
    if not os.path.isdir(location):
        return location  # a hub id
    try:
        if Path(location).resolve() == packaged_model_path().resolve():
            return "all-MiniLM-L6-v2"
    except ModelError:
        pass
    return Path(location).name


def _transformer_config(model: SentenceTransformer) -> Any:
    """The transformers config of the model's first module (None for one without it)."""
    return getattr(getattr(model[0], "auto_model", None), "config", None)


def _fingerprint(model: SentenceTransformer) -> str:
    digest = hashlib.blake2b(digest_size=8)
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _training_imports() -> tuple[Any, Any, Any, Any, Any]:
    try:
        from datasets import Dataset
    except ImportError as exc:
        raise ConfigError(
            "fine-tuning the embedder needs the `datasets` package, which is not installed. "
            "Fix: `pip install datasets`."
        ) from exc
    from sentence_transformers import (
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.base.training_args import BatchSamplers
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    return (
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
        MultipleNegativesRankingLoss,
        BatchSamplers,
        Dataset,
    )


def _warmup_steps(n_pairs: int, batch_size: int, epochs: int, max_steps: int | None) -> int:
    """10% of the training steps (an int, which every transformers version accepts)."""
    total = max_steps if max_steps is not None else math.ceil(n_pairs / batch_size) * epochs
    return int(0.1 * total)


def _check_pairs(pairs: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    if isinstance(pairs, (str, bytes)):
        raise DataError("fine_tune() takes a sequence of (anchor, positive) pairs, not a string.")
    checked: list[tuple[str, str]] = []
    for pos, pair in enumerate(pairs):
        if (
            not isinstance(pair, (tuple, list))
            or len(pair) != 2
            or not all(isinstance(t, str) for t in pair)
        ):
            raise DataError(f"pair {pos} is {pair!r}; expected a tuple (anchor, positive) of str.")
        anchor, positive = pair
        if not anchor.strip() or not positive.strip():
            raise DataError(f"pair {pos} has an empty text: {pair!r}. Drop it or fill it in.")
        checked.append((anchor, positive))
    if len(checked) < 2:
        raise DataError(
            f"fine_tune() needs at least 2 pairs (in-batch negatives); got {len(checked)}."
        )
    return checked
