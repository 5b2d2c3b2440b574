"""The intent model: a softmax classification head (question -> FAQ id) over the bot's embedding.

The head reads the same L2-normalized sentence embedding that retrieval searches with, so one
forward pass of the encoder per message serves both the intent logits and the FAISS query.
It is trained at build time on the KB's questions (and answers) minus the held-out paraphrases
used for calibration: full-batch Adam with weight decay, seconds even for CLINC150's 15,000
questions on a CPU. Fine-tuning the encoder body as well is `--fine-tune` (the contrastive
fine-tune of `builder`), after which the head is trained on the fine-tuned vectors.

Saved as `intent.npz` (weights, bias) + `intent.json` (labels, training record) in a bot version.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from threefold.core.errors import ConfigError, ModelError, ThreefoldError

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "intent.npz"
META_FILE = "intent.json"


class TrainingStopped(ThreefoldError):
    """A build or training was asked to stop (`should_stop`) and did, leaving nothing behind;
    `stage` says where it stopped."""

    def __init__(self, stage: str) -> None:
        super().__init__(f"stopped on request {stage}")
        self.stage = stage


def check_stop(should_stop: Callable[[], bool] | None, stage: str) -> None:
    """Raise TrainingStopped(stage) when `should_stop` says so."""
    if should_stop is not None and should_stop():
        raise TrainingStopped(stage)


@dataclass
class IntentTraining:
    """How the head is trained: full-batch Adam steps, learning rate, L2 decay, logit scale."""

    steps: int = 300
    learning_rate: float = 0.05
    weight_decay: float = 1e-4
    scale: float = 20.0
    seed: int = 13

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ConfigError(f"intent steps must be >= 1, found {self.steps}")
        if not 0.0 < self.learning_rate <= 10.0:
            raise ConfigError(
                f"intent learning_rate must be within (0, 10], found {self.learning_rate}"
            )
        if self.weight_decay < 0:
            raise ConfigError(f"intent weight_decay must be >= 0, found {self.weight_decay}")
        if self.scale <= 0:
            raise ConfigError(f"intent scale must be > 0, found {self.scale}")


@dataclass
class IntentHead:
    """logits = scale * vectors @ weight.T + bias; one row of `weight` per label (FAQ id)."""

    labels: list[str]
    weight: np.ndarray
    bias: np.ndarray
    scale: float
    stats: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.weight.shape[0] != len(self.labels) or self.bias.shape != (len(self.labels),):
            raise ModelError(
                f"intent head has {len(self.labels)} labels but weights {self.weight.shape} and "
                f"bias {self.bias.shape}; the files mix two models. Fix: rebuild the bot"
            )

    @property
    def version(self) -> str:
        digest = hashlib.sha256(json.dumps(self.labels).encode("utf-8"))
        digest.update(np.ascontiguousarray(self.weight, dtype=np.float32).tobytes())
        digest.update(np.ascontiguousarray(self.bias, dtype=np.float32).tobytes())
        return digest.hexdigest()[:12]

    def logits(self, vectors: np.ndarray) -> np.ndarray:
        """(n, n_labels) float32 logits for (n, dimension) normalized vectors."""
        return (self.scale * (np.asarray(vectors, np.float32) @ self.weight.T) + self.bias).astype(
            np.float32
        )

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        np.savez(path / WEIGHTS_FILE, weight=self.weight, bias=self.bias)
        meta = {"labels": self.labels, "scale": self.scale, "version": self.version, **self.stats}
        (path / META_FILE).write_text(json.dumps(meta, indent=1), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> IntentHead:
        path = Path(path)
        for name in (WEIGHTS_FILE, META_FILE):
            if not (path / name).is_file():
                raise ModelError(
                    f"{path / name} is missing: the bot version is incomplete. Fix: rebuild the "
                    "bot with `threefold qa build`"
                )
        meta = json.loads((path / META_FILE).read_text(encoding="utf-8"))
        with np.load(path / WEIGHTS_FILE) as arrays:
            head = cls(
                labels=list(meta["labels"]),
                weight=arrays["weight"].astype(np.float32),
                bias=arrays["bias"].astype(np.float32),
                scale=float(meta["scale"]),
                stats={k: v for k, v in meta.items() if k not in ("labels", "scale", "version")},
            )
        if head.version != meta.get("version"):
            raise ModelError(
                f"{path / WEIGHTS_FILE} does not match version {meta.get('version')!r} in "
                f"{path / META_FILE} (found {head.version!r}). Fix: rebuild the bot"
            )
        return head


def train_intent_head(
    vectors: np.ndarray,
    labels: Sequence[str],
    training: IntentTraining | None = None,
    *,
    should_stop: Callable[[], bool] | None = None,
) -> IntentHead:
    """Fit the head by full-batch Adam on cross-entropy (torch, CPU).

    `should_stop` is asked before each step; TrainingStopped when it answers True.
    """
    import torch

    training = training or IntentTraining()
    names = sorted(set(labels))
    if len(names) < 2:
        raise ConfigError(f"an intent model needs two or more FAQs, found {len(names)}")
    started = time.perf_counter()
    column = {name: i for i, name in enumerate(names)}
    x = torch.from_numpy(np.asarray(vectors, np.float32))
    y = torch.tensor([column[label] for label in labels])
    generator = torch.Generator().manual_seed(training.seed)
    weight = (0.01 * torch.randn(len(names), x.shape[1], generator=generator)).requires_grad_()
    bias = torch.zeros(len(names), requires_grad=True)
    optimizer = torch.optim.Adam([weight, bias], lr=training.learning_rate)
    loss = torch.tensor(0.0)
    for step in range(training.steps):
        check_stop(should_stop, f"at intent head step {step} of {training.steps}")
        optimizer.zero_grad()
        logits = training.scale * (x @ weight.T) + bias
        loss = torch.nn.functional.cross_entropy(logits, y)
        (loss + training.weight_decay * weight.pow(2).sum()).backward()
        optimizer.step()
    with torch.no_grad():
        accuracy = float((logits.argmax(dim=1) == y).float().mean())
    stats = {
        "training": asdict(training),
        "n_train": len(labels),
        "train_accuracy": round(accuracy, 4),
        "train_loss": round(float(loss.detach()), 4),
        "train_seconds": round(time.perf_counter() - started, 2),
    }
    logger.info("trained the intent head: %d examples, %d FAQs, %s", len(labels), len(names), stats)
    return IntentHead(
        names,
        weight.detach().numpy().astype(np.float32),
        bias.detach().numpy().astype(np.float32),
        training.scale,
        stats,
    )
