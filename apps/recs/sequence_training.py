"""Training the sequence ranker on next-item prediction from the event log.

Every training history is cut into windows of `max_length` items; at each position the model
predicts the next item with a softmax over every item that has training events
(cross-entropy); items without any stay out of it, so their text path is not taught "never".
Validation is each user's last new item (never the test item); training stops when validation
NDCG@k has not improved for `patience` checks or `max_seconds` pass; the best weights are kept.
Then `refit_epochs` more epochs run over the whole histories, validation items included, so the
most recent transitions (which predict the next item best) are learned too.
`train_sequence_ensemble` trains the text-aware ranker and ID-only SASRec side by side
(`sequence_ensemble`), each in its own process when there are cores for both; every member seeds
its own RNGs, so the result is the same either way.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from threefold.apps.recs.events import Event, group_by_user
from threefold.apps.recs.ranking_scores import rank_of_targets, summarize, user_blocks
from threefold.apps.recs.sequence_ensemble import SequenceEnsemble
from threefold.apps.recs.sequence_model import SequenceConfig, SequenceModel
from threefold.core.errors import ConfigError
from threefold.core.training_rng import keeps_global_rngs
from threefold.core.worker_processes import check_process_count, cpu_count, run_in_processes

logger = logging.getLogger(__name__)

VALIDATION_BLOCK_VALUES = 1 << 26  # scores held at once while validating (256 MiB)


@dataclass
class SequenceSettings:
    """How the sequence ranker is trained (sized for MovieLens-100k on 2 CPU cores)."""

    epochs: int = 200
    batch_size: int = 128
    learning_rate: float = 2e-3
    weight_decay: float = 0.0
    id_dropout: float = 0.1
    check_every: int = 2
    patience: int = 5
    max_seconds: float = 480.0
    k: int = 10
    seed: int = 13
    threads: int | None = None
    refit_epochs: int = 4
    sampled_softmax_from: int = 20_000
    """Trained items from which a batch's softmax is a sample of them (`_sampled_softmax_loss`)."""
    sampled_negatives: int = 8_192
    """Items drawn per batch for that sample, besides the batch's own targets."""
    processes: int | None = None
    """Ensemble members trained at once, each in its own process (None: one per CPU core, up
    to the number of members; 1: one after the other in this process)."""

    def __post_init__(self) -> None:
        if not isinstance(self.refit_epochs, int) or self.refit_epochs < 0:
            raise ConfigError(
                "SequenceSettings.refit_epochs must be an integer >= 0, found "
                f"{self.refit_epochs!r}"
            )
        check_process_count("SequenceSettings.processes", self.processes)
        positive = ("epochs", "batch_size", "check_every", "patience", "k")
        for name in (*positive, "sampled_softmax_from", "sampled_negatives"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(
                    f"SequenceSettings.{name} must be a positive integer, found {value!r}"
                )
        if self.learning_rate <= 0 or self.max_seconds <= 0 or self.weight_decay < 0:
            raise ConfigError(
                "SequenceSettings.learning_rate and max_seconds must be > 0 and weight_decay "
                f">= 0; found {self.learning_rate!r}, {self.max_seconds!r}, {self.weight_decay!r}"
            )
        if not 0.0 <= self.id_dropout < 1.0:
            raise ConfigError(
                f"SequenceSettings.id_dropout must be in [0, 1), found {self.id_dropout!r}"
            )


def ordered_positions(events: Sequence[Event], position: Mapping[str, int]) -> dict[str, list[int]]:
    """Each user's distinct items (first interaction) in time order, as catalog positions."""
    out: dict[str, list[int]] = {}
    for user_id, history in group_by_user(events).items():
        seen: set[int] = set()
        positions = []
        for event in history:
            p = position.get(event.item_id)
            if p is not None and p not in seen:
                seen.add(p)
                positions.append(p)
        out[user_id] = positions
    return out


def training_windows(sequences: Sequence[Sequence[int]], length: int) -> tuple[np.ndarray, ...]:
    """(inputs, targets) windows of `length` + 1 items, right-aligned, 0-padded, positions + 1."""
    inputs, targets = [], []
    for sequence in sequences:
        if len(sequence) < 2:
            continue
        shifted = np.asarray(sequence, dtype=np.int64) + 1
        for end in range(len(shifted), 1, -length):
            chunk = shifted[max(0, end - length - 1) : end]
            x = np.zeros(length, dtype=np.int64)
            y = np.zeros(length, dtype=np.int64)
            x[length - len(chunk) + 1 :] = chunk[:-1]
            y[length - len(chunk) + 1 :] = chunk[1:]
            inputs.append(x)
            targets.append(y)
    if not inputs:
        return np.zeros((0, length), dtype=np.int64), np.zeros((0, length), dtype=np.int64)
    return np.stack(inputs), np.stack(targets)


class LastItemValidation:
    """Each user's last new item as the target of the rest of the history (users with >= 2)."""

    def __init__(self, sequences: Mapping[str, Sequence[int]], n_items: int) -> None:
        users = sorted(u for u, s in sequences.items() if len(s) >= 2)
        self.histories = [list(sequences[u][:-1]) for u in users]
        self.targets = np.array([sequences[u][-1] for u in users], dtype=np.int64)
        self.n_items = n_items

    def measure(
        self, model: Any, vectors: np.ndarray, item_ids: Sequence[str], k: int
    ) -> dict[str, float]:
        """hr@k, ndcg@k and mrr of `model` (a ranker or an ensemble) on these targets.

        Users are scored a block at a time (whole blocks of 256, the scoring batch), so the
        (users, items) scores of a large catalog never exist all at once.
        """
        table = model.item_table(vectors, item_ids)
        ranks = []
        for block in user_blocks(
            len(self.histories), self.n_items, VALIDATION_BLOCK_VALUES, multiple=256
        ):
            histories = self.histories[block]
            seen = np.zeros((len(histories), self.n_items), dtype=bool)
            for row, history in enumerate(histories):
                seen[row, history] = True
            scores = model.scores(histories, vectors, item_ids, table=table)
            ranks.append(rank_of_targets(scores, seen, self.targets[block]))
        return summarize(np.concatenate(ranks) if ranks else np.zeros(0), k)


@keeps_global_rngs
def train_sequence_model(
    item_ids: Sequence[str],
    vectors: np.ndarray,
    events: Sequence[Event],
    *,
    config: SequenceConfig | None = None,
    settings: SequenceSettings | None = None,
    refit: bool = True,
) -> SequenceModel:
    """Train on every user's history but its last new item, which is the validation target.

    With `refit`, `refit_sequence_model` then reads `events` whole (validation items included);
    pass False to refit later on more events (after the combiner has used the validation items).
    """
    import torch

    config = config or SequenceConfig(text_dimension=int(vectors.shape[1]))
    settings = settings or SequenceSettings()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    started = time.perf_counter()
    position = {item_id: i for i, item_id in enumerate(item_ids)}
    # only items seen in training get an ID embedding; others are scored through text alone
    sequences = ordered_positions(events, position)
    train = {u: s[:-1] for u, s in sequences.items() if len(s) >= 2}
    trained_ids = sorted({p for s in train.values() for p in s})
    vocabulary = [item_ids[p] for p in trained_ids]
    # the softmax runs over the items with training events only: an item nobody has touched
    # yet (a new one) must not be taught as everyone's negative, or its text path learns "never"
    softmax = _softmax_over(trained_ids, len(item_ids))
    model = SequenceModel(config, vocabulary)
    network = model.network
    id_rows = torch.as_tensor(model.id_rows(item_ids))
    text = torch.as_tensor(np.ascontiguousarray(vectors, dtype=np.float32))
    inputs, targets = training_windows(list(train.values()), config.max_length)
    validation = LastItemValidation(sequences, len(item_ids))
    optimizer = torch.optim.AdamW(
        network.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay
    )
    key = f"ndcg@{settings.k}"
    best: dict[str, float] = {key: -1.0}
    best_state, best_epoch, stale, epoch = None, 0, 0, 0
    logger.info(
        "training the sequence ranker: %d windows, %d items (%d with IDs), text=%s ids=%s",
        len(inputs),
        len(item_ids),
        len(vocabulary),
        config.use_text,
        config.use_ids,
    )
    for epoch in range(1, settings.epochs + 1):
        total = _train_epoch(
            network, optimizer, (inputs, targets), text, id_rows, softmax, config, settings, rng
        )
        elapsed = time.perf_counter() - started
        if epoch % settings.check_every == 0 or elapsed > settings.max_seconds:
            metrics = validation.measure(model, vectors, item_ids, settings.k)
            logger.info(
                "sequence epoch %d: loss %.4f, validation %s (%.0fs)",
                epoch,
                total / max(len(inputs), 1),
                metrics,
                elapsed,
            )
            if metrics[key] > best[key]:
                best, best_epoch, stale = metrics, epoch, 0
                best_state = copy.deepcopy(network.state_dict())
            else:
                stale += 1
            if stale >= settings.patience:
                break
        if elapsed > settings.max_seconds:
            logger.info("sequence ranker: time budget of %.0fs reached", settings.max_seconds)
            break
    if best_state is not None:
        network.load_state_dict(best_state)
    network.eval()
    model.info = {
        "settings": asdict(settings),
        "validation": {**best, "users": len(validation.histories)},
        "best_epoch": best_epoch,
        "epochs_run": epoch,
        "windows": len(inputs),
        "train_seconds": round(time.perf_counter() - started, 2),
    }
    logger.info("sequence ranker trained: %s", model.info)
    if refit:
        refit_sequence_model(model, item_ids, vectors, events, settings)
    return model


def train_sequence_ensemble(
    item_ids: Sequence[str],
    vectors: np.ndarray,
    events: Sequence[Event],
    *,
    settings: SequenceSettings | None = None,
    refit: bool = True,
) -> SequenceEnsemble:
    """The text-aware ranker and ID-only SASRec, each trained like `train_sequence_model`.

    The ensemble's own validation (same last items) is recorded in its `info`.
    """
    settings = settings or SequenceSettings()
    started = time.perf_counter()
    configs = [
        SequenceConfig(text_dimension=int(vectors.shape[1]), use_text=use_text)
        for use_text in (True, False)
    ]
    processes = _member_processes(settings, len(configs))
    members = _train_members(item_ids, vectors, events, configs, settings, processes)
    ensemble = SequenceEnsemble(members)
    position = {item_id: i for i, item_id in enumerate(item_ids)}
    validation = LastItemValidation(ordered_positions(events, position), len(item_ids))
    ensemble.info = {
        "kind": "mean log-probability of a text-aware ranker and ID-only SASRec",
        "validation": {
            **validation.measure(ensemble, vectors, item_ids, settings.k),
            "users": len(validation.histories),
        },
        "members": [
            {"use_text": m.config.use_text, "use_ids": m.config.use_ids, **m.info} for m in members
        ],
        "train_seconds": round(time.perf_counter() - started, 2),
        "processes": processes,
    }
    logger.info("sequence ensemble validation: %s", ensemble.info["validation"])
    if refit:
        refit_sequence_model(ensemble, item_ids, vectors, events, settings)
    return ensemble


def _member_processes(settings: SequenceSettings, members: int) -> int:
    return min(members, settings.processes or cpu_count())


def _train_members(
    item_ids: Sequence[str],
    vectors: np.ndarray,
    events: Sequence[Event],
    configs: Sequence[SequenceConfig],
    settings: SequenceSettings,
    processes: int,
) -> list[SequenceModel]:
    """One model per config, without refit: in this process, or in `processes` at once.

    In processes, each gets an equal share of this process's torch threads (at least one) and
    saves its model to a scratch folder that this process loads.
    """
    import torch

    if processes <= 1:
        return [
            train_sequence_model(
                item_ids, vectors, events, config=config, settings=settings, refit=False
            )
            for config in configs
        ]
    threads = settings.threads or max(1, torch.get_num_threads() // processes)
    member_settings = dataclasses.replace(settings, threads=threads)
    logger.info(
        "training %d sequence rankers in %d processes, %d torch thread(s) each",
        len(configs),
        processes,
        threads,
    )
    with tempfile.TemporaryDirectory(prefix="threefold-sequence-") as scratch:
        calls = [
            (Path(scratch) / f"member-{i}", item_ids, vectors, events, config, member_settings)
            for i, config in enumerate(configs)
        ]
        folders = run_in_processes(_train_member_into, calls, processes=processes)
        return [SequenceModel.load(folder) for folder in folders]


def _train_member_into(
    folder: Path,
    item_ids: Sequence[str],
    vectors: np.ndarray,
    events: Sequence[Event],
    config: SequenceConfig,
    settings: SequenceSettings,
) -> Path:
    """In a worker process: `train_sequence_model` without refit, saved to `folder`."""
    model = train_sequence_model(
        item_ids, vectors, events, config=config, settings=settings, refit=False
    )
    model.save(folder)
    return folder


@keeps_global_rngs
def refit_sequence_model(
    model: SequenceModel | SequenceEnsemble,
    item_ids: Sequence[str],
    vectors: np.ndarray,
    events: Sequence[Event],
    settings: SequenceSettings,
) -> None:
    """`settings.refit_epochs` more epochs over every history whole (no held-out item), in place.

    Early stopping needed each user's newest transition as validation; this teaches it too.
    An ensemble refits each member.
    """
    import torch

    if isinstance(model, SequenceEnsemble):
        for member in model.members:
            refit_sequence_model(member, item_ids, vectors, events, settings)
        model.info["refit"] = [member.info.get("refit") for member in model.members]
        return

    position = {item_id: i for i, item_id in enumerate(item_ids)}
    sequences = ordered_positions(events, position)
    windows = training_windows(list(sequences.values()), model.config.max_length)
    if not settings.refit_epochs or not len(windows[0]):
        return
    started = time.perf_counter()
    network = model.network
    softmax = _softmax_over(sorted({p for s in sequences.values() for p in s}), len(item_ids))
    optimizer = torch.optim.AdamW(
        network.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay
    )
    text = torch.as_tensor(np.ascontiguousarray(vectors, dtype=np.float32))
    id_rows = torch.as_tensor(model.id_rows(item_ids))
    torch.manual_seed(settings.seed + 1)  # dropout: the same refit wherever the model trained
    rng = np.random.default_rng(settings.seed + 1)
    for _ in range(settings.refit_epochs):
        _train_epoch(
            network, optimizer, windows, text, id_rows, softmax, model.config, settings, rng
        )
    network.eval()
    model.info["refit"] = {
        "epochs": settings.refit_epochs,
        "windows": len(windows[0]),
        "seconds": round(time.perf_counter() - started, 2),
    }
    logger.info("sequence ranker refit on whole histories: %s", model.info["refit"])


def _softmax_over(trained: Sequence[int], n_items: int) -> tuple[Any, Any]:
    """(catalog positions in the softmax, softmax column of each position + 1, -1 if none)."""
    import torch

    columns = np.asarray(trained, dtype=np.int64)
    row = np.full(n_items + 1, -1, dtype=np.int64)
    row[columns + 1] = np.arange(len(columns))
    return torch.as_tensor(columns), torch.as_tensor(row)


def _train_epoch(
    network: Any,
    optimizer: Any,
    windows: tuple[np.ndarray, np.ndarray],
    text: Any,
    id_rows: Any,
    softmax: tuple[Any, Any],
    config: SequenceConfig,
    settings: SequenceSettings,
    rng: np.random.Generator,
) -> float:
    """One pass over the windows in a random order; returns the summed loss."""
    import torch

    inputs, targets = windows
    columns, column_of = softmax
    network.train()
    order = rng.permutation(len(inputs))
    total = 0.0
    for start in range(0, len(order), settings.batch_size):
        batch = order[start : start + settings.batch_size]
        x = torch.as_tensor(inputs[batch])
        y = torch.as_tensor(targets[batch])
        rows = id_rows
        if settings.id_dropout and config.use_ids and config.use_text:
            keep = torch.rand(len(rows)) >= settings.id_dropout
            rows = rows * keep
        if len(columns) >= settings.sampled_softmax_from:
            loss = _sampled_softmax_loss(
                network, x, y, text, rows, columns, settings.sampled_negatives, rng
            )
        else:
            table = network.items(text, rows)
            hidden = network.encode(x, table)
            mask = y > 0
            logits = hidden[mask] @ table[columns].T
            loss = torch.nn.functional.cross_entropy(logits, column_of[y[mask]])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += float(loss.detach()) * len(batch)
    return total


def _sampled_softmax_loss(
    network: Any,
    x: Any,
    y: Any,
    text: Any,
    rows: Any,
    columns: Any,
    negatives: int,
    rng: np.random.Generator,
) -> Any:
    """Cross-entropy of each target against the batch's targets plus `negatives` trained items
    drawn uniformly: only those and the batch's inputs pass through the item layers, so a
    large catalog's batch costs (targets + sample) instead of every item, twice (the table and
    the logits).
    """
    import torch

    mask = y > 0
    targets = y[mask] - 1
    drawn = columns[torch.as_tensor(rng.integers(0, len(columns), negatives))]
    candidates, labels = torch.unique(torch.cat([targets, drawn]), return_inverse=True)
    inputs = x > 0
    needed, where = torch.unique(torch.cat([candidates, x[inputs] - 1]), return_inverse=True)
    table = network.items(text[needed], rows[needed])
    local = torch.zeros_like(x)
    local[inputs] = where[len(candidates) :] + 1
    hidden = network.encode(local, table)
    logits = hidden[mask] @ table[where[: len(candidates)]].T
    return torch.nn.functional.cross_entropy(logits, labels[: len(targets)])
