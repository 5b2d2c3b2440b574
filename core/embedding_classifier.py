"""A sentence-embedding classifier: a BERT body, mean pooling, L2 norm and a linear head.

The small-data path (`small_data`) trains this shape (SetFit style). It answers
`model(**encoded).logits` like a transformers sequence classifier, so `TextClassifier`
predicts, fingerprints and int8-quantizes it unchanged. On disk the body is a plain
transformers model (`AutoModel.from_pretrained(dir)` loads it) and the head is `head.safetensors`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModel, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from threefold.core.errors import ModelError

HEAD_FILE = "head.safetensors"
ARCHITECTURE = "sentence-embedding+linear-head"


def masked_mean(tokens: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The mean of each text's token vectors, padding excluded."""
    mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
    return (tokens * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


def encode_batch(
    tokenizer, texts: list[str], max_length: int, device: str
) -> dict[str, torch.Tensor]:
    """Token ids and attention mask of `texts` (padded, truncated) on `device`: the inputs of
    the mean-pooled bodies (token type ids left to the model's all-zero default)."""
    encoded = tokenizer(
        texts, truncation=True, max_length=max_length, padding=True, return_tensors="pt"
    )
    return {key: encoded[key].to(device) for key in ("input_ids", "attention_mask")}


class EmbeddingClassifier(nn.Module):
    """Mean-pooled, L2-normalised sentence embedding followed by a linear layer."""

    def __init__(self, body: PreTrainedModel, head: nn.Linear) -> None:
        super().__init__()
        self.body = body
        self.head = head

    @property
    def config(self):
        """The body's transformers config (labels live in its id2label)."""
        return self.body.config

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **extra) -> torch.Tensor:
        """L2-normalised mean of the token vectors (padding excluded)."""
        tokens = self.body(input_ids=input_ids, attention_mask=attention_mask, **extra)[0]
        return nn.functional.normalize(masked_mean(tokens, attention_mask), dim=-1)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **extra
    ) -> SequenceClassifierOutput:
        return SequenceClassifierOutput(
            logits=self.head(self.embed(input_ids, attention_mask, **extra))
        )

    def save_pretrained(self, path: str | Path) -> None:
        """Body as a transformers model directory, head beside it."""
        self.body.save_pretrained(path)
        head = {name: t.detach().cpu().contiguous() for name, t in self.head.state_dict().items()}
        save_file(head, str(Path(path) / HEAD_FILE))

    @classmethod
    def from_pretrained(cls, path: str | Path) -> EmbeddingClassifier:
        """Load a directory written by `save_pretrained`; ModelError names a missing head."""
        path = Path(path)
        if not (path / HEAD_FILE).is_file():
            raise ModelError(
                f"{path / HEAD_FILE} is missing, so {path} is an incomplete classifier directory. "
                "Fix: copy the whole directory again, or retrain"
            )
        body = AutoModel.from_pretrained(str(path))
        state = load_file(str(path / HEAD_FILE))
        out_features, in_features = state["weight"].shape
        head = nn.Linear(in_features, out_features)
        head.load_state_dict(state)
        return cls(body, head).eval()
