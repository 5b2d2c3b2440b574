"""Training on small data: which path to take, and the SetFit-style contrastive path.

Fine-tuning a classification head from a few dozen examples mostly fails (a handful of optimizer
steps, a noisy early-stopping split, a model that predicts one class). Below
`TrainingConfig.small_data_threshold` examples per label the classifier is instead trained like
SetFit (Tunstall et al. 2022): the sentence embedder is fine-tuned contrastively on
same-label / different-label pairs (cosine-similarity loss), then a logistic-regression head is
fitted on the frozen embeddings. The switch counts the average examples per label. A
multi-task model (`core.multitask`) takes the same path with one label set per task.
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
from transformers import AutoModel

from threefold.core.base_model import load_pretrained
from threefold.core.embedding_classifier import EmbeddingClassifier, encode_batch
from threefold.core.training_config import TrainingConfig
from threefold.core.training_recipe import class_weights
from threefold.core.training_rng import keeps_global_rngs

logger = logging.getLogger(__name__)

FINE_TUNE = "fine-tune"
CONTRASTIVE = "contrastive"
ROUNDS = 10
"""Contrastive steps = ROUNDS passes over the examples in batches, within [MIN_STEPS, MAX_STEPS]."""
MIN_STEPS = 20
MAX_STEPS = 60
UNLABELLED = -100
"""A text's label id in a label set it has no label in (cross-entropy's ignore_index)."""


def unused_schedule_note(config: TrainingConfig) -> str | None:
    """What to tell a caller who set an epoch schedule (`--epochs`, `--patience`) that the
    contrastive path does not use, or None when they set none."""
    from threefold.core.training_config import EPOCH_SCHEDULE

    schedule = config.changed(EPOCH_SCHEDULE)
    if not schedule:
        return None
    return (
        ", ".join(f"{name}={value} ({EPOCH_SCHEDULE[name]})" for name, value in schedule.items())
        + " not used: the contrastive path runs its own number of steps ("
        f"{ROUNDS} passes over the examples, {MIN_STEPS} to {MAX_STEPS} steps) and has no "
        "early stopping. Fix: cap the steps with --max-steps (max_steps), or pass "
        "--strategy fine-tune to use them"
    )


@dataclass(frozen=True)
class StrategyChoice:
    """The training path and, in words, why it was chosen."""

    strategy: str
    reason: str


def choose_strategy(labels: Sequence[str], config: TrainingConfig) -> StrategyChoice:
    """`contrastive` below `config.small_data_threshold` examples per label on average, else
    `fine-tune`.

    The average, not the rarest label: a large set with one rare label (Twitter financial news
    topic: 12,231 examples, 20 labels, the rarest with 31) has plenty to fine-tune on, and the
    contrastive path would see a small sample of it.
    """
    counts = Counter(labels)
    fewest_label, fewest = min(sorted(counts.items()), key=lambda item: item[1])
    per_label = len(labels) / len(counts)
    threshold = config.small_data_threshold
    sizes = (
        f"{len(labels)} training examples over {len(counts)} labels, {per_label:.0f} per label "
        f"on average (the rarest, {fewest_label!r}, has {fewest})"
    )
    if config.strategy != "auto":
        return StrategyChoice(
            config.strategy,
            f"strategy {config.strategy!r} was requested ({sizes}; auto switches at "
            f"{threshold} per label)",
        )
    if per_label < threshold:
        return StrategyChoice(
            CONTRASTIVE,
            f"small data: {sizes}, below {threshold} per label: too few to fine-tune a "
            "classification head reliably; contrastive sentence-pair fine-tuning plus a "
            "logistic-regression head (SetFit style) works from a handful of examples per label",
        )
    return StrategyChoice(
        FINE_TUNE,
        f"enough data: {sizes}, at least {threshold} per label, so the whole model is "
        "fine-tuned end to end",
    )


def pair_targets(label_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(target, weight) over every pair i < j of a batch: target 1 for the same label, else 0.

    Same-label and different-label pairs each carry half the total weight (the two kinds are
    balanced, as in SetFit's pair sampling); the diagonal and lower triangle weigh 0.
    """
    same = (label_ids[:, None] == label_ids[None, :]).float()
    upper = torch.triu(torch.ones_like(same), diagonal=1)
    positive, negative = same * upper, (1 - same) * upper
    weight = torch.zeros_like(same)
    kinds = [kind for kind in (positive, negative) if kind.sum() > 0]
    for kind in kinds:
        weight += kind / (kind.sum() * len(kinds))
    return same, weight


def contrastive_steps(n_examples: int, batch_size: int) -> int:
    """How many steps: ROUNDS passes over the data, within [MIN_STEPS, MAX_STEPS]."""
    return min(max(math.ceil(ROUNDS * n_examples / batch_size), MIN_STEPS), MAX_STEPS)


@keeps_global_rngs
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
    `config.max_steps` > 0 caps the steps.
    """
    transformers.set_seed(config.seed)
    tokenizer, body = load_pretrained(base, AutoModel, config.max_length)
    body.config.id2label = dict(enumerate(label_names))
    body.config.label2id = {label: i for i, label in enumerate(label_names)}
    dim = body.config.hidden_size
    model = EmbeddingClassifier(body, nn.Linear(dim, len(label_names))).to(device)
    label_ids = torch.tensor([label_names.index(label) for label in labels])
    record = contrastive_fine_tune(model, tokenizer, texts, [label_ids], config, device)
    embeddings = embed_texts(model, tokenizer, texts, config.max_length, device)
    weights = class_weights(labels, label_names) if config.class_weighting else None
    model.head = fit_logistic_head(embeddings, label_ids, len(label_names), weights).to(device)
    model.eval()
    return model, tokenizer, record


def contrastive_fine_tune(
    model: nn.Module,
    tokenizer,
    texts: Sequence[str],
    label_sets: Sequence[torch.Tensor],
    config: TrainingConfig,
    device: str,
) -> dict:
    """Fine-tune `model.body` so that `model.embed` pulls same-label texts together.

    Each label set (one per task; `UNLABELLED` marks a text without a label in it) gets the
    steps one classifier would: `contrastive_steps` over its labelled texts, in batches drawn
    from them alone. Each step embeds one batch per label set still training and pulls every
    same-label pair of a batch towards cosine 1 and every different-label pair towards 0
    (SetFit's cosine-similarity loss, over all pairs of the batch rather than sampled pairs),
    the losses summed. Returns the record: stop_reason (the head is fitted next), steps, pairs,
    train_loss.
    """
    rows = [torch.nonzero(ids != UNLABELLED).flatten().tolist() for ids in label_sets]
    sizes = [min(config.batch_size, len(r)) for r in rows]
    plan = [  # a set with fewer than two labelled texts has no pair to learn from
        contrastive_steps(len(r), size) if len(r) >= 2 else 0
        for r, size in zip(rows, sizes, strict=True)
    ]
    if config.max_steps > 0:
        plan = [min(steps, config.max_steps) for steps in plan]
    steps = max(plan, default=0)
    optimizer = torch.optim.AdamW(
        model.body.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    scheduler = transformers.get_linear_schedule_with_warmup(
        optimizer, int(config.warmup_ratio * steps), steps
    )
    logger.info(
        "contrastive fine-tuning on %d examples: label sets of %s examples, batches of %s (all "
        "pairs in each), %s steps, lr %g",
        len(texts),
        [len(r) for r in rows],
        sizes,
        plan,
        config.learning_rate,
    )
    rng = np.random.default_rng(config.seed)
    orders: list[list[int]] = [[] for _ in rows]
    model.train()
    log_every = max(1, steps // 10)
    pairs_seen = 0
    loss = torch.tensor(0.0)
    for step in range(steps):
        losses = []
        for labelled, size, order, label_ids, own in zip(
            rows, sizes, orders, label_sets, plan, strict=True
        ):
            if step >= own:
                continue
            if len(order) < size:
                order.extend(labelled[int(i)] for i in rng.permutation(len(labelled)))
            batch = order[:size]
            del order[:size]
            encoded = encode_batch(tokenizer, [texts[i] for i in batch], config.max_length, device)
            embeddings = model.embed(**encoded)
            target, weight = pair_targets(label_ids[batch].to(device))
            losses.append((weight * (embeddings @ embeddings.T - target) ** 2).sum())
            pairs_seen += size * (size - 1) // 2
        loss = torch.stack(losses).sum()
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        if (step + 1) % log_every == 0 or step + 1 == steps:
            logger.info("contrastive step %d/%d: loss %.4f", step + 1, steps, loss.item())
    model.eval()
    described = (
        f"{steps} steps of {sizes[0]} examples"
        if len(plan) == 1
        else f"{steps} steps ({' and '.join(map(str, plan))} for the {len(plan)} label sets, in "
        f"batches of {' and '.join(map(str, sizes))} examples)"
    )
    stop_reason = (
        f"contrastive pass complete: {described} ({pairs_seen} sentence pairs)"
        + (f" (capped by max_steps {config.max_steps})" if config.max_steps > 0 else "")
        + "; then the logistic-regression head was fitted"
    )
    return {
        "stop_reason": stop_reason,
        "steps": steps,
        "pairs": pairs_seen,
        "train_loss": round(loss.item(), 6),
    }


def embed_texts(
    model: nn.Module, tokenizer, texts: Sequence[str], max_length: int, device: str
) -> torch.Tensor:
    """`model.embed` of `texts` (eval mode, batches of 64), on the CPU."""
    model.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), 64):
            encoded = encode_batch(tokenizer, list(texts[start : start + 64]), max_length, device)
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
