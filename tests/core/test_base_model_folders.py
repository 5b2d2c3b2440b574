"""Local base model folders: every loader refuses one without a tokenizer, and RoBERTa-style
models (position ids start after the padding id) get the number of tokens they really accept."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from support.classifier_data import LABELS, TEXTS, TINY
from tokenizers import ByteLevelBPETokenizer
from transformers import (
    AutoModel,
    BertConfig,
    BertModel,
    BertTokenizerFast,
    MPNetConfig,
    RobertaConfig,
    RobertaModel,
    RobertaTokenizerFast,
    XLMRobertaConfig,
)

from threefold.core.base_model import position_limit
from threefold.core.classifier_training import train_classifier
from threefold.core.embedder import Embedder
from threefold.core.errors import ConfigError, ModelError
from threefold.core.multitask import train_multitask

TINY_BODY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2}
ROBERTA_POSITIONS = 34  # pad_token_id 1: positions 2..33 hold tokens, so 32 tokens fit
ROBERTA_TOKENS = ROBERTA_POSITIONS - 2
LONG_TEXTS = [" ".join([text] * 8) for text in TEXTS]  # 40+ tokens each
FEW_STEPS = dataclasses.replace(TINY, max_steps=2)
NO_TOKENIZER = r"has no usable tokenizer.*vocab\.txt.*Fix: copy the tokenizer files"


def _bert(folder: Path, *, tokenizer: bool = True, vocab_size: int | None = None) -> str:
    """A 2-layer BERT over the words of TEXTS (WordPiece); `vocab_size` overrides the model's."""
    folder.mkdir()
    words = sorted({word for text in TEXTS for word in text.split()})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    vocab_file = folder.parent / f"{folder.name}-vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    config = BertConfig(vocab_size=vocab_size or len(vocab), intermediate_size=64, **TINY_BODY)
    BertModel(config).save_pretrained(folder)
    if tokenizer:
        BertTokenizerFast(vocab=str(vocab_file)).save_pretrained(folder)
    return str(folder)


def _roberta(folder: Path) -> str:
    """A 2-layer RoBERTa with a byte-level BPE trained on TEXTS, pad id 1 as in roberta-base."""
    folder.mkdir()
    bpe = ByteLevelBPETokenizer()
    special = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    bpe.train_from_iterator(TEXTS, vocab_size=300, special_tokens=special, show_progress=False)
    bpe.save_model(str(folder))
    tokenizer = RobertaTokenizerFast(
        vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt")
    )
    config = RobertaConfig(
        vocab_size=len(tokenizer),
        intermediate_size=64,
        max_position_embeddings=ROBERTA_POSITIONS,
        pad_token_id=tokenizer.pad_token_id,
        **TINY_BODY,
    )
    RobertaModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def bert_without_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> str:
    return _bert(tmp_path_factory.mktemp("bases") / "bert-no-tokenizer", tokenizer=False)


@pytest.fixture(scope="module")
def roberta(tmp_path_factory: pytest.TempPathFactory) -> str:
    return _roberta(tmp_path_factory.mktemp("bases") / "roberta")


# ------------------------------------------------------------------ no tokenizer
@pytest.mark.parametrize("strategy", ["fine-tune", "contrastive"])
def test_classifier_training_refuses_a_base_without_tokenizer(
    bert_without_tokenizer: str, strategy: str
) -> None:
    config = dataclasses.replace(FEW_STEPS, strategy=strategy)
    with pytest.raises(ModelError, match=NO_TOKENIZER):
        train_classifier(TEXTS, LABELS, base_model=bert_without_tokenizer, config=config)


def test_multitask_training_refuses_a_base_without_tokenizer(bert_without_tokenizer: str) -> None:
    with pytest.raises(ModelError, match=NO_TOKENIZER):
        train_multitask(TEXTS, {"sentiment": LABELS}, base_model=bert_without_tokenizer)


def test_embedder_refuses_a_base_without_tokenizer(bert_without_tokenizer: str) -> None:
    with pytest.raises(ModelError, match=NO_TOKENIZER):
        Embedder(bert_without_tokenizer, device="cpu").load()


# ------------------------------------------------------------------ position limit
@pytest.mark.parametrize(
    ("config", "accepted"),
    [
        (BertConfig(max_position_embeddings=34, **TINY_BODY), 34),
        (RobertaConfig(max_position_embeddings=34, pad_token_id=1, **TINY_BODY), 32),
        (XLMRobertaConfig(max_position_embeddings=34, pad_token_id=0, **TINY_BODY), 33),
        (MPNetConfig(max_position_embeddings=34, **TINY_BODY), 32),
    ],
    ids=["bert", "roberta", "xlm-roberta-pad-0", "mpnet"],
)
def test_position_limit_is_the_longest_input_the_model_takes(config, accepted: int) -> None:
    config.vocab_size = 50
    model = AutoModel.from_config(config).eval()
    assert position_limit(config) == accepted
    with torch.inference_mode():
        model(input_ids=torch.full((1, accepted), 7))  # 7: no padding id
        with pytest.raises((IndexError, RuntimeError)):
            model(input_ids=torch.full((1, accepted + 1), 7))


def test_roberta_training_suggests_the_max_length_it_accepts_and_trains_with_it(
    roberta: str,
) -> None:
    config = dataclasses.replace(FEW_STEPS, max_length=ROBERTA_POSITIONS)
    with pytest.raises(ConfigError, match="supports") as refused:
        train_classifier(LONG_TEXTS, LABELS, base_model=roberta, config=config)
    suggested = int(re.search(r"--max-length (\d+) or less", str(refused.value)).group(1))
    assert suggested == ROBERTA_TOKENS

    config = dataclasses.replace(FEW_STEPS, max_length=suggested)
    model = train_classifier(LONG_TEXTS, LABELS, base_model=roberta, config=config)
    assert model.metrics["steps"] == 2
    assert set(model.predict(LONG_TEXTS)) <= set(LABELS)


def test_roberta_contrastive_and_multitask_refuse_a_max_length_past_its_positions(
    roberta: str,
) -> None:
    config = dataclasses.replace(FEW_STEPS, max_length=ROBERTA_POSITIONS, strategy="contrastive")
    fix = f"--max-length {ROBERTA_TOKENS} or less"
    with pytest.raises(ConfigError, match=fix):
        train_classifier(LONG_TEXTS, LABELS, base_model=roberta, config=config)
    with pytest.raises(ConfigError, match=fix):
        train_multitask(LONG_TEXTS, {"sentiment": LABELS}, base_model=roberta, config=config)


def test_roberta_multitask_trains_on_texts_longer_than_its_positions(roberta: str) -> None:
    config = dataclasses.replace(FEW_STEPS, max_length=ROBERTA_TOKENS, strategy="contrastive")
    model = train_multitask(LONG_TEXTS, {"sentiment": LABELS}, base_model=roberta, config=config)
    assert set(model.predict(LONG_TEXTS)["sentiment"]) <= set(LABELS)


def test_embedder_caps_roberta_at_the_tokens_it_accepts(roberta: str) -> None:
    embedder = Embedder(roberta, device="cpu", max_length=256).load()
    assert embedder.max_length == ROBERTA_TOKENS
    vectors = embedder.encode([LONG_TEXTS[0] * 4, TEXTS[0]])
    assert vectors.shape == (2, 32)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)


# ------------------------------------------------------------------ ids past the embeddings
def test_token_ids_past_the_models_vocabulary_are_a_clear_error(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A tokenizer that knows more tokens than the weights have rows (not a missing one)."""
    n_words = len({word for text in TEXTS for word in text.split()})
    base = _bert(tmp_path_factory.mktemp("bases") / "bert-short-vocab", vocab_size=n_words - 10)
    outside = r"outside its embedding tables.*Fix:"
    with pytest.raises(ModelError, match=outside):
        Embedder(base, device="cpu").encode(TEXTS)
    with pytest.raises(ModelError, match=outside):
        train_classifier(TEXTS, LABELS, base_model=base, config=FEW_STEPS)
