"""Fine-tuning levers beyond plain cross-entropy: layer-wise LR decay, FGM, R-Drop, smoothing.

Each is off at its neutral value (`layer_lr_decay` 1, `adversarial_epsilon` 0, `rdrop_alpha` 0,
`label_smoothing` 0) and measured one by one in `bench/classifier_recipe.py`:

* layer-wise learning-rate decay (Howard & Ruder 2018; Sun et al. 2019): the classifier head
  learns at the full rate, each transformer layer below it at `decay` times the one above;
* FGM (Miyato et al. 2017): a second forward/backward pass on word embeddings pushed
  `epsilon` along their loss gradient, so the model also fits its worst nearby input;
* R-Drop (Liang et al. 2021): two dropout passes per batch, their predictions pulled together
  by a symmetric KL term weighted `alpha`;
* label smoothing (Szegedy et al. 2016) in the cross-entropy;
* knowledge distillation (Hinton et al. 2015): the KL divergence from a teacher's
  probabilities, both softened at a temperature, mixed into the loss;
* class weighting (`class_weighting`, on by default): 'balanced' loss weights, shared by the
  fine-tune, the small-data head and every head of a multi-task model;
* checkpoint averaging (`checkpoint_average`): the mean of the weights of the last epochs'
  checkpoints up to the best one (`CheckpointAverage`);
* text augmentation (`augment_copies`): perturbed copies of each training text, words deleted
  and swapped at random (`with_augmented_copies`; EDA without its thesaurus, Wei & Zou 2019).
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable, Sequence

import torch
from torch import nn

_LAYER = re.compile(r"\.(?:layer|layers|block|blocks)\.(\d+)\.")
_NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")


def class_weights(labels: Sequence[str], label_names: Sequence[str]) -> torch.Tensor:
    """'Balanced' weights n / (k * count): rare labels weigh more in the loss.

    A label without training examples (possible when a multi-task text set labels a task only
    in part) gets the weight of a label seen once; it never takes part in the loss anyway.
    """
    counts = Counter(labels)
    n, k = len(labels), len(label_names)
    return torch.tensor(
        [n / (k * max(counts[label], 1)) for label in label_names], dtype=torch.float32
    )


def layer_depth(name: str, n_layers: int) -> int:
    """0 for embeddings, i + 1 for transformer layer i, n_layers + 1 for the rest (head, pooler)."""
    found = _LAYER.search(name)
    if found is not None:
        return int(found.group(1)) + 1
    if "embeddings" in name:
        return 0
    return n_layers + 1


def layerwise_param_groups(
    model: nn.Module, learning_rate: float, decay: float, weight_decay: float
) -> list[dict]:
    """Optimizer parameter groups: depth d learns at learning_rate * decay ** (top - d); biases
    and norms without weight decay."""
    n_layers = int(getattr(model.config, "num_hidden_layers", 0) or 0)
    top = n_layers + 1
    groups: dict[tuple[int, bool], dict] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        depth = layer_depth(name, n_layers)
        decayed = not any(marker in name for marker in _NO_DECAY)
        group = groups.setdefault(
            (depth, decayed),
            {
                "params": [],
                "lr": learning_rate * decay ** (top - depth),
                "weight_decay": weight_decay if decayed else 0.0,
            },
        )
        group["params"].append(parameter)
    return [groups[key] for key in sorted(groups)]


def classification_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    weight: torch.Tensor | None,
    label_smoothing: float,
) -> torch.Tensor:
    """Cross-entropy with optional per-class weights and label smoothing."""
    return nn.functional.cross_entropy(
        logits.view(-1, logits.size(-1)),
        labels.view(-1),
        weight=weight,
        label_smoothing=label_smoothing,
    )


def rdrop_loss(
    first: torch.Tensor,
    second: torch.Tensor,
    loss: Callable[[torch.Tensor], torch.Tensor],
    alpha: float,
) -> torch.Tensor:
    """Mean task loss of two dropout passes plus alpha * their symmetric KL divergence."""
    log_p, log_q = first.log_softmax(-1), second.log_softmax(-1)
    kl = nn.functional.kl_div(log_p, log_q, log_target=True, reduction="batchmean")
    kl = kl + nn.functional.kl_div(log_q, log_p, log_target=True, reduction="batchmean")
    return 0.5 * (loss(first) + loss(second)) + alpha * 0.5 * kl


def distillation_loss(
    logits: torch.Tensor, teacher_probs: torch.Tensor, temperature: float
) -> torch.Tensor:
    """T^2 x KL(teacher || student), both softened at temperature T (teacher given as
    probabilities at T = 1: p^(1/T), renormalized, is the softmax of its logits / T)."""
    teacher_log = torch.log(teacher_probs.to(logits.dtype).clamp_min(1e-12)) / temperature
    teacher_log = teacher_log.log_softmax(-1)
    student_log = (logits / temperature).log_softmax(-1)
    kl = nn.functional.kl_div(student_log, teacher_log, log_target=True, reduction="batchmean")
    return kl * temperature**2


class EmbeddingAdversary:
    """FGM on the word embeddings: `attack()` after the clean backward pass, then the
    adversarial forward/backward, then `restore()` (exact: the moved rows are copied back)."""

    def __init__(self, model: nn.Module, epsilon: float) -> None:
        self.weight = model.get_input_embeddings().weight
        self.epsilon = epsilon
        self._saved: tuple[torch.Tensor, torch.Tensor] | None = None  # (rows, their values)

    def attack(self) -> bool:
        """Move the embeddings `epsilon` along their gradient; False (nothing moved) without one."""
        grad = self.weight.grad
        if grad is None:
            return False
        norm = torch.linalg.vector_norm(grad)
        if not torch.isfinite(norm) or norm == 0:
            return False
        rows = torch.nonzero(grad.abs().sum(dim=1)).squeeze(1)  # the tokens of this batch
        self._saved = rows, self.weight.data[rows].clone()
        self.weight.data[rows] += self.epsilon * grad[rows] / norm
        return True

    def restore(self) -> None:
        if self._saved is not None:
            rows, values = self._saved
            self.weight.data[rows] = values
            self._saved = None


class CheckpointAverage:
    """Weight snapshots taken at the end of each epoch; `average(up_to_step)` is the mean of the
    last `count` of them taken at or before that step (the best checkpoint's)."""

    def __init__(self, count: int, keep: int) -> None:
        self.count = count
        self.keep = max(keep, count)  # the best may lie `patience` epochs before the last
        self.snapshots: list[tuple[int, dict[str, torch.Tensor]]] = []

    def snapshot(self, model: nn.Module, step: int) -> None:
        state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        self.snapshots = [*self.snapshots, (step, state)][-self.keep :]

    def average(self, up_to_step: int | None) -> tuple[dict[str, torch.Tensor], list[int]] | None:
        """(averaged state dict, the steps averaged), or None with fewer than two snapshots.

        Floating-point tensors are averaged; others (e.g. position ids) come from the last one.
        """
        taken = [(s, state) for s, state in self.snapshots if up_to_step is None or s <= up_to_step]
        taken = taken[-self.count :]
        if len(taken) < 2:
            return None
        states = [state for _, state in taken]
        averaged = {
            name: (
                torch.stack([state[name] for state in states]).mean(dim=0)
                if value.is_floating_point()
                else value
            )
            for name, value in states[-1].items()
        }
        return averaged, [s for s, _ in taken]


def perturbed(text: str, rng: random.Random, share: float = 0.1) -> str:
    """`text` with about `share` of its words deleted and as many pairs of words swapped (at
    least one of each when it has two or more words; never all words deleted)."""
    words = text.split()
    if len(words) < 2:
        return text
    n = max(1, round(share * len(words)))
    for _ in range(n):
        i, j = rng.sample(range(len(words)), 2)
        words[i], words[j] = words[j], words[i]
    for _ in range(min(n, len(words) - 1)):
        del words[rng.randrange(len(words))]
    return " ".join(words)


def with_augmented_copies(
    texts: Sequence[str], labels: Sequence[str], copies: int, seed: int
) -> tuple[list[str], list[str]]:
    """The examples followed by `copies` perturbed copies of each, same labels (seeded)."""
    rng = random.Random(seed)
    out_texts, out_labels = list(texts), list(labels)
    for _ in range(copies):
        out_texts.extend(perturbed(text, rng) for text in texts)
        out_labels.extend(labels)
    return out_texts, out_labels
