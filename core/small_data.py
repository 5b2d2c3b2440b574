"""Training on small data: which path to take, and the SetFit-style contrastive path.

Fine-tuning a classification head from a few dozen examples mostly fails (a handful of optimizer
steps, a noisy early-stopping split, a model that predicts one class). Below
`TrainingConfig.small_data_threshold` examples per label the classifier is instead trained like
SetFit (Tunstall et al. 2022): the sentence embedder is fine-tuned contrastively on
same-label / different-label pairs (cosine-similarity loss), then a logistic-regression head is
fitted on the frozen embeddings.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import transformers
from torch import nn
from transformers import AutoModel, AutoTokenizer

from threefold.core.embedding_classifier import EmbeddingClassifier
from threefold.core.errors import ModelError
from threefold.core.training_config import TrainingConfig

logger = logging.getLogger(__name__)

FINE_TUNE = "fine-tune"
CONTRASTIVE = "contrastive"
PAIR_ITERATIONS = 5
"""Rounds of pairs: each example meets this many positive and this many negative partners
(SetFit's default is 20; 5 keeps a CPU run to minutes; measured in bench/classifier_quality.py)."""
MIN_PAIRS = 640
MAX_PAIRS = 1000
CONTRASTIVE_LEARNING_RATE = 2e-5


@dataclass(frozen=True)
class StrategyChoice:
    """The training path and, in words, why it was chosen."""

    strategy: str
    reason: str


def choose_strategy(labels: Sequence[str], config: TrainingConfig) -> StrategyChoice:
    """`contrastive` below `config.small_data_threshold` examples per label, else `fine-tune`."""
    counts = Counter(labels)
    fewest_label, fewest = min(sorted(counts.items()), key=lambda item: item[1])
    threshold = config.small_data_threshold
    if config.strategy != "auto":
        return StrategyChoice(
            config.strategy,
            f"strategy {config.strategy!r} was requested (the rarest label, {fewest_label!r}, "
            f"has {fewest} training examples; auto switches at {threshold} per label)",
        )
    if fewest < threshold:
        return StrategyChoice(
            CONTRASTIVE,
            f"small data: the rarest label, {fewest_label!r}, has {fewest} training examples "
            f"(< {threshold} per label), too few to fine-tune a classification head reliably; "
            "contrastive sentence-pair fine-tuning plus a logistic-regression head (SetFit "
            "style) works from a handful of examples per label",
        )
    return StrategyChoice(
        FINE_TUNE,
        f"enough data: every label has >= {threshold} training examples (the rarest, "
        f"{fewest_label!r}, has {fewest}), so the whole model is fine-tuned end to end",
    )


def contrastive_pairs(
    labels: Sequence[str], n_pairs: int, seed: int
) -> list[tuple[int, int, float]]:
    """(i, j, target): half same-label pairs (target 1), half different-label pairs (target 0).

    Each example in turn gets one positive and one negative partner, round after round, until
    `n_pairs` are drawn; a label with a single example pairs it with itself.
    """
    rng = np.random.default_rng(seed)
    by_label: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        by_label.setdefault(label, []).append(i)
    pairs: list[tuple[int, int, float]] = []
    while len(pairs) < n_pairs:
        for i in rng.permutation(len(labels)):
            i = int(i)
            same = [j for j in by_label[labels[i]] if j != i] or [i]
            other = [j for j in range(len(labels)) if labels[j] != labels[i]]
            pairs.append((i, int(rng.choice(same)), 1.0))
            pairs.append((i, int(rng.choice(other)), 0.0))
            if len(pairs) >= n_pairs:
                break
    return pairs[:n_pairs]


def pair_budget(n_examples: int) -> int:
    """How many pairs the contrastive pass draws: 2 x PAIR_ITERATIONS per example, within
    [MIN_PAIRS, MAX_PAIRS] (the tiniest data sets get extra rounds: they are cheap)."""
    return min(max(2 * PAIR_ITERATIONS * n_examples, MIN_PAIRS), MAX_PAIRS)


def train_contrastive(
    texts: Sequence[str],
    labels: Sequence[str],
    label_names: Sequence[str],
    base: str,
    config: TrainingConfig,
    device: str,
) -> tuple[EmbeddingClassifier, object, dict]:
    """Contrastively fine-tune `base` on pairs of `texts`, then fit the head.

    Returns (model, tokenizer, record): the record has stop_reason, steps, pairs, train_loss.
    `config.max_steps` > 0 caps the pair steps.
    """
    transformers.set_seed(config.seed)
    try:
        tokenizer = AutoTokenizer.from_pretrained(base)
        body = AutoModel.from_pretrained(base)
    except OSError as exc:
        raise ModelError(f"cannot load base model {base!r}: {exc}") from exc
    body.config.id2label = dict(enumerate(label_names))
    body.config.label2id = {label: i for i, label in enumerate(label_names)}
    dim = body.config.hidden_size
    model = EmbeddingClassifier(body, nn.Linear(dim, len(label_names))).to(device)

    pairs = contrastive_pairs(labels, pair_budget(len(texts)), config.seed)
    steps = math.ceil(len(pairs) / config.batch_size)
    if config.max_steps > 0:
        steps = min(steps, config.max_steps)
    optimizer = torch.optim.AdamW(
        model.body.parameters(), lr=CONTRASTIVE_LEARNING_RATE, weight_decay=config.weight_decay
    )
    scheduler = transformers.get_linear_schedule_with_warmup(
        optimizer, int(config.warmup_ratio * steps), steps
    )
    logger.info(
        "contrastive fine-tuning: %d sentence pairs from %d examples, batch %d, %d steps, lr %g",
        len(pairs),
        len(texts),
        config.batch_size,
        steps,
        CONTRASTIVE_LEARNING_RATE,
    )
    model.train()
    log_every = max(1, steps // 10)
    for step in range(steps):
        batch = pairs[step * config.batch_size : (step + 1) * config.batch_size]
        left = _encode(tokenizer, [texts[i] for i, _, _ in batch], config.max_length, device)
        right = _encode(tokenizer, [texts[j] for _, j, _ in batch], config.max_length, device)
        target = torch.tensor([t for _, _, t in batch], device=device)
        similarity = (model.embed(**left) * model.embed(**right)).sum(dim=-1)
        loss = nn.functional.mse_loss(similarity, target)
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        if (step + 1) % log_every == 0 or step + 1 == steps:
            logger.info("contrastive step %d/%d: loss %.4f", step + 1, steps, loss.item())
    model.eval()
    used = min(len(pairs), steps * config.batch_size)
    stop_reason = (
        f"contrastive pass complete: {steps} steps over {used} of {len(pairs)} sentence pairs"
        + (f" (capped by max_steps {config.max_steps})" if config.max_steps > 0 else "")
        + "; then the logistic-regression head was fitted"
    )
    embeddings = embed_texts(model, tokenizer, texts, config.max_length, device)
    label_ids = torch.tensor([label_names.index(label) for label in labels])
    weights = None
    if config.class_weighting:
        counts = Counter(labels)
        weights = torch.tensor(
            [len(labels) / (len(label_names) * counts[name]) for name in label_names]
        )
    model.head = fit_logistic_head(embeddings, label_ids, len(label_names), weights).to(device)
    model.eval()
    record = {
        "stop_reason": stop_reason,
        "steps": steps,
        "pairs": len(pairs),
        "train_loss": round(loss.item(), 6),
    }
    return model, tokenizer, record


def embed_texts(
    model: EmbeddingClassifier, tokenizer, texts: Sequence[str], max_length: int, device: str
) -> torch.Tensor:
    """Embeddings of `texts` (eval mode, batches of 64), on the CPU."""
    model.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), 64):
            encoded = _encode(tokenizer, list(texts[start : start + 64]), max_length, device)
            out.append(model.embed(**encoded).float().cpu())
    return torch.cat(out)


def fit_logistic_head(
    embeddings: torch.Tensor,
    label_ids: torch.Tensor,
    n_labels: int,
    class_weights: torch.Tensor | None = None,
    *,
    inverse_regularization: float = 1.0,
) -> nn.Linear:
    """Multinomial logistic regression (L2, like scikit-learn's C=1 default) as an nn.Linear."""
    embeddings = embeddings.detach().float().cpu()
    head = nn.Linear(embeddings.shape[1], n_labels)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    optimizer = torch.optim.LBFGS(
        head.parameters(), lr=1.0, max_iter=500, tolerance_grad=1e-6, line_search_fn="strong_wolfe"
    )
    n = len(label_ids)

    def objective() -> torch.Tensor:
        optimizer.zero_grad()
        losses = nn.functional.cross_entropy(
            head(embeddings), label_ids, weight=class_weights, reduction="none"
        )
        loss = losses.sum() / n + head.weight.pow(2).sum() / (2 * inverse_regularization * n)
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(objective)
    return head


def _encode(tokenizer, texts: list[str], max_length: int, device: str) -> dict[str, torch.Tensor]:
    encoded = tokenizer(
        texts, truncation=True, max_length=max_length, padding=True, return_tensors="pt"
    )
    return {
        key: value.to(device)
        for key, value in encoded.items()
        if key in ("input_ids", "attention_mask")
    }
