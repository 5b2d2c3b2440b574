"""Training options for the text classifier: one dataclass, validated on construction."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields

from threefold.core.errors import ConfigError

STRATEGIES = ("auto", "contrastive", "fine-tune")
FINE_TUNE_LEVERS = (
    "layer_lr_decay",
    "adversarial_epsilon",
    "rdrop_alpha",
    "label_smoothing",
    "group_by_length",
    "teacher",
    "checkpoint_average",
    "augment_copies",
)
"""Options only the single-task fine-tune path uses (not the contrastive path, not multi-task)."""
EPOCH_SCHEDULE = {"epochs": "--epochs", "early_stopping_patience": "--patience"}
"""Options (and their flags) the contrastive path does not use: it runs a step count of its own
(`small_data.contrastive_steps`, capped by `max_steps`) and has no early stopping."""


@dataclass
class TrainingConfig:
    """How to fine-tune a `TextClassifier`.

    `eval_fraction` is the stratified share of the training data held out for early stopping
    when no separate eval set is given (0 trains on everything, without early stopping).
    `max_steps` > 0 overrides `epochs`. `early_stopping_patience` counts evaluations without
    a better eval macro-F1 before training stops (0 turns early stopping off).
    `strategy` picks the training path: `auto` (contrastive below `small_data_threshold`
    examples per label on average, fine-tune otherwise), `fine-tune` (the whole model,
    classification head on top) or `contrastive` (SetFit style: sentence pairs, then a logistic
    head; `epochs` and `early_stopping_patience` do not apply to it). The threshold of 128 is
    measured: at 64 per label on FPB, contrastive 0.755 vs fine-tune 0.357 accuracy.
    Fine-tune levers (`core.training_recipe`, off at these defaults): `layer_lr_decay` < 1
    (each layer below the head learns at that factor of the one above), `adversarial_epsilon`
    > 0 (FGM on word embeddings), `rdrop_alpha` > 0 (R-Drop), `label_smoothing` > 0.
    `teacher` (a trained classifier directory, or a base model that is then fine-tuned here on
    the same data and split first) turns on knowledge distillation on the fine-tune path: the
    loss is (1 - `distill_alpha`) x cross-entropy + `distill_alpha` x the KL divergence from the
    teacher's probabilities at `distill_temperature` (Hinton et al. 2015).
    `group_by_length` batches texts of similar length together (shuffled groups), so less of
    each batch is padding: 1.4-1.7x faster training on 2 CPU cores (FPB), as accurate within
    noise (12 paired runs on FPB and both Twitter files, bench/classifier_recipe.py), so it is
    on by default; False draws random batches.
    `checkpoint_average` > 1 averages the weights of the best epoch's checkpoint and the ones
    of the epochs before it, that many in all, and keeps the average unless it scores a lower
    eval macro-F1 than the best checkpoint (no eval set: the last epochs are averaged).
    `augment_copies` adds that many perturbed copies of each training text (EDA's random
    deletion and swap of words, Wei & Zou 2019; eval texts never). Both are off by default:
    on FPB (3 seeds) averaging two checkpoints measured -0.4 point and one augmented copy +0.5
    point at 1.3x the training time. `FINE_TUNE_LEVERS` apply to the single-task fine-tune
    path only; elsewhere they are named as unused.
    """

    epochs: float = 4.0
    learning_rate: float = 5e-5
    batch_size: int = 32
    max_length: int = 128
    eval_fraction: float = 0.2
    seed: int = 42
    early_stopping_patience: int = 2
    class_weighting: bool = True
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_steps: int = -1
    text_column: str = "text"
    label_column: str = "label"
    output_progress: bool = True
    strategy: str = "auto"
    small_data_threshold: int = 128
    layer_lr_decay: float = 1.0
    adversarial_epsilon: float = 0.0
    rdrop_alpha: float = 0.0
    label_smoothing: float = 0.0
    group_by_length: bool = True
    teacher: str | None = None
    distill_alpha: float = 0.5
    distill_temperature: float = 2.0
    checkpoint_average: int = 1
    augment_copies: int = 0

    def __post_init__(self) -> None:
        _check_number("epochs", self.epochs, low=0.0, low_inclusive=False)
        _check_number("learning_rate", self.learning_rate, low=0.0, low_inclusive=False, high=1.0)
        _check_int("batch_size", self.batch_size, minimum=1)
        _check_int("max_length", self.max_length, minimum=8)
        _check_number("eval_fraction", self.eval_fraction, low=0.0, high=1.0, high_inclusive=False)
        _check_int("seed", self.seed, minimum=0)
        _check_int("early_stopping_patience", self.early_stopping_patience, minimum=0)
        _check_number("weight_decay", self.weight_decay, low=0.0)
        _check_number("warmup_ratio", self.warmup_ratio, low=0.0, high=1.0, high_inclusive=False)
        _check_int("max_steps", self.max_steps, minimum=-1)
        if self.max_steps == 0:
            raise ConfigError("max_steps must be -1 (use epochs) or a positive number; found 0")
        for name in ("text_column", "label_column"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"{name} must be a non-empty column name; found {value!r}")
        if self.text_column == self.label_column:
            raise ConfigError(
                f"text_column and label_column are both {self.text_column!r}; "
                "they must name two different columns"
            )
        if self.strategy not in STRATEGIES:
            raise ConfigError(
                f"strategy must be one of {sorted(STRATEGIES)}; found {self.strategy!r}"
            )
        _check_int("small_data_threshold", self.small_data_threshold, minimum=0)
        _check_number("layer_lr_decay", self.layer_lr_decay, low=0.0, low_inclusive=False, high=1.0)
        _check_number("adversarial_epsilon", self.adversarial_epsilon, low=0.0, high=10.0)
        _check_number("rdrop_alpha", self.rdrop_alpha, low=0.0, high=100.0)
        _check_number(
            "label_smoothing", self.label_smoothing, low=0.0, high=1.0, high_inclusive=False
        )
        if self.teacher is not None and (
            not isinstance(self.teacher, str) or not self.teacher.strip()
        ):
            raise ConfigError(
                "teacher must be a classifier or base model directory (or unset); found "
                f"{self.teacher!r}"
            )
        _check_number("distill_alpha", self.distill_alpha, low=0.0, high=1.0)
        _check_number(
            "distill_temperature", self.distill_temperature, low=0.0, low_inclusive=False, high=20.0
        )
        _check_int("checkpoint_average", self.checkpoint_average, minimum=1)
        _check_int("augment_copies", self.augment_copies, minimum=0)
        if self.checkpoint_average > 20 or self.augment_copies > 20:
            raise ConfigError(
                "checkpoint_average and augment_copies must be <= 20 (each copy costs a "
                f"model's weights in memory or an epoch's time); found {self.checkpoint_average} "
                f"and {self.augment_copies}"
            )
        for name in ("class_weighting", "output_progress", "group_by_length"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false; found {getattr(self, name)!r}")

    def changed(self, names: Iterable[str]) -> dict[str, object]:
        """The options among `names` that are set away from their defaults."""
        return {
            name: getattr(self, name)
            for name in names
            if getattr(self, name) != getattr(type(self), name)
        }

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-ready copy (stored beside the trained weights)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, object]) -> TrainingConfig:
        """Rebuild from `to_dict()` output; unknown keys are a ConfigError naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"unknown training option(s) {unknown}; expected some of {sorted(known)}"
            )
        return cls(**values)  # type: ignore[arg-type]


def _check_int(name: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an integer; found {value!r}")
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}; found {value}")


def _check_number(
    name: str,
    value: object,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number; found {value!r}")
    too_low = low is not None and (value < low if low_inclusive else value <= low)
    too_high = high is not None and (value > high if high_inclusive else value >= high)
    if too_low or too_high:
        left = "[" if low_inclusive else "("
        right = "]" if high_inclusive else ")"
        span = f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
        raise ConfigError(f"{name} must be in {span}; found {value}")
