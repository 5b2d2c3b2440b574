"""Embedder specifics: MiniLM vectors, truncation, quantization, save/load, fine-tuning.

The TextEncoder contract (shapes, normalization, batching, bad input) is in test_encoder.py.
"""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from threefold.core.embedder import META_FILE, Embedder
from threefold.core.errors import ConfigError, DataError, ModelError

SENTENCES = [
    "How do I reset my password?",
    "I forgot my password and cannot log in.",
    "The central bank raised interest rates by half a point.",
    "Shipping to Canada takes five business days.",
]

PAIRS = [
    ("how do I reset my password", "Use the 'forgot password' link on the login page."),
    ("where is my parcel", "Track your order from the Orders page of your account."),
    ("can I get my money back", "Refunds are paid within 14 days of the return."),
    ("do you deliver abroad", "We ship to 30 countries; delivery takes 5 to 10 days."),
    ("how do I close my account", "Ask support to delete the account from Settings."),
    ("is there a student discount", "Students get 15% off with a valid student email."),
]


def test_encode_returns_normalized_float32(embedder: Embedder) -> None:
    vectors = embedder.encode(SENTENCES)
    assert vectors.shape == (4, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder.dimension == 384


def test_similar_sentences_are_closer(embedder: Embedder) -> None:
    v = embedder.encode(SENTENCES)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.3
    assert v[0] @ v[1] > v[0] @ v[3] + 0.3


def test_empty_string_is_embedded(embedder: Embedder) -> None:
    vectors = embedder.encode(["", "hello"])
    assert np.isfinite(vectors).all()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_too_long_text_is_truncated_to_max_length(embedder: Embedder) -> None:
    words = [f"word{i % 50}" for i in range(5000)]
    long_text = " ".join(words)
    prefix = " ".join(words[:600])  # already well past 256 tokens
    long_vec, prefix_vec = embedder.encode([long_text, prefix])
    np.testing.assert_allclose(long_vec, prefix_vec, atol=1e-5)


def test_model_id_names_model_and_settings(embedder: Embedder) -> None:
    model_id = embedder.model_id
    assert model_id.startswith("all-MiniLM-L6-v2@")
    assert model_id.endswith("-len256")
    assert embedder.model_id == model_id


def test_concurrent_encode_matches_serial(embedder: Embedder) -> None:
    expected = embedder.encode(SENTENCES)
    results: list[np.ndarray] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(3):
                results.append(embedder.encode(SENTENCES))
        except BaseException as exc:  # re-raised in the test thread below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(results) == 12
    for got in results:
        np.testing.assert_allclose(got, expected, atol=1e-5)


def test_constructor_is_cheap_and_validates() -> None:
    lazy = Embedder("/nowhere/at/all")
    assert not lazy.loaded
    with pytest.raises(ConfigError, match="batch_size"):
        Embedder(batch_size=0)
    with pytest.raises(ConfigError, match="max_length"):
        Embedder(max_length=-1)


def test_missing_model_dir_raises_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        Embedder(str(tmp_path / "missing")).load()


def test_corrupt_model_dir_raises_model_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ModelError, match=r"could not load model directory .*broken"):
        Embedder(str(broken)).load()


def test_plain_hugging_face_dir_gets_mean_pooling(
    embedder: Embedder, base_model_path: str, tmp_path: Path
) -> None:
    # A plain transformers folder (no sentence-transformers modules.json): mean pooling is
    # added, which is exactly what all-MiniLM-L6-v2 uses, so the vectors must match.
    plain = tmp_path / "plain-bert"
    plain.mkdir()
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(Path(base_model_path) / name, plain / name)
    for name in ("vocab.txt", "special_tokens_map.json"):
        if (Path(base_model_path) / name).exists():
            shutil.copy(Path(base_model_path) / name, plain / name)
    bert = Embedder(str(plain)).load()
    assert bert.dimension == 384
    np.testing.assert_allclose(bert.encode(SENTENCES), embedder.encode(SENTENCES), atol=1e-4)


def test_int8_quantized_embedder_stays_close(cpu_embedder: Embedder) -> None:
    embedder = cpu_embedder
    quantized = Embedder(device="cpu", quantize=True).load()
    fp32 = embedder.encode(SENTENCES)
    int8 = quantized.encode(SENTENCES)
    assert int8.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(int8, axis=1), 1.0, atol=1e-5)
    assert (fp32 * int8).sum(axis=1).min() > 0.9
    # Same ranking for the paraphrase question.
    assert int8[0] @ int8[1] > int8[0] @ int8[2]
    assert quantized.model_id != embedder.model_id
    assert quantized.model_id.endswith("-int8")


def test_quantized_twin_matches_a_quantized_load_and_leaves_the_original_fp32(
    cpu_embedder: Embedder,
) -> None:
    embedder = cpu_embedder
    twin = embedder.quantized_twin()
    assert twin is not embedder and twin.quantize and not embedder.quantize
    quantized = Embedder(device="cpu", quantize=True).load()
    np.testing.assert_allclose(twin.encode(SENTENCES), quantized.encode(SENTENCES), atol=1e-5)
    assert twin.model_id == embedder.model_id + "-int8"
    assert twin.max_length == embedder.max_length
    # the original still encodes in fp32 (the twin quantized a copy)
    np.testing.assert_allclose(
        embedder.encode(SENTENCES), Embedder(device="cpu").load().encode(SENTENCES), atol=1e-5
    )
    assert twin.quantized_twin() is twin


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_quantize_needs_cpu() -> None:
    with pytest.raises(ConfigError, match="CPU only"):
        Embedder(device="cuda", quantize=True).load()


def test_save_and_from_dir_encode_identically(embedder: Embedder, tmp_path: Path) -> None:
    folder = tmp_path / "saved"
    embedder.save(folder)
    meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    assert meta["dimension"] == 384
    assert meta["max_length"] == 256
    assert meta["fine_tune"] is None
    assert meta["base_model"] == embedder.base_model
    loaded = Embedder.from_dir(folder)
    np.testing.assert_array_equal(loaded.encode(SENTENCES), embedder.encode(SENTENCES))
    assert loaded.base_model == embedder.base_model
    assert loaded.model_id.split("@")[1] == embedder.model_id.split("@")[1]


def test_from_dir_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        Embedder.from_dir(tmp_path / "nothing")
    folder = tmp_path / "bad-meta"
    folder.mkdir()
    (folder / META_FILE).write_text("[1, 2", encoding="utf-8")
    with pytest.raises(ModelError, match=r"threefold_embedder\.json is not readable JSON"):
        Embedder.from_dir(folder)


def test_weights_changed_after_saving_are_refused_at_load(
    embedder: Embedder, tmp_path: Path
) -> None:
    folder = tmp_path / "saved"
    embedder.save(folder)
    recorded = json.loads((folder / META_FILE).read_text(encoding="utf-8"))["fingerprint"]
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1000] ^= 0x01  # one flipped bit in the last tensor's data: still loads
    weights.write_bytes(bytes(data))
    with pytest.raises(
        ModelError,
        match=rf"saved have fingerprint [0-9a-f]{{16}}, but .*"
        rf"records {recorded}: they were changed or damaged .*Fix: restore",
    ):
        Embedder.from_dir(folder)


def test_a_folder_saved_without_a_fingerprint_loads_with_one_warning(
    embedder: Embedder, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "older"
    embedder.save(folder)
    meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    del meta["fingerprint"]
    (folder / META_FILE).write_text(json.dumps(meta), encoding="utf-8")
    with caplog.at_level("WARNING", logger="threefold.core.embedder"):
        loaded = Embedder.from_dir(folder)
    assert loaded.weights_id == embedder.weights_id
    warned = [r for r in caplog.records if "records no weights fingerprint" in r.getMessage()]
    assert len(warned) == 1


def test_fine_tune_rejects_bad_pairs() -> None:
    lazy = Embedder()  # validation happens before any weights are loaded
    with pytest.raises(DataError, match="at least 2 pairs"):
        lazy.fine_tune(PAIRS[:1])
    with pytest.raises(DataError, match="pair 1 has an empty text"):
        lazy.fine_tune([PAIRS[0], ("question", "  ")])
    with pytest.raises(DataError, match="pair 0 is"):
        lazy.fine_tune([("only one",), PAIRS[1]])
    with pytest.raises(ConfigError, match="batch_size must be at least 2"):
        lazy.fine_tune(PAIRS, batch_size=1)
    with pytest.raises(ConfigError, match="int8 weights cannot be trained"):
        Embedder(quantize=True).fine_tune(PAIRS)
    assert not lazy.loaded


@pytest.mark.slow
def test_fine_tune_pulls_pairs_together_and_round_trips(
    base_model_path: str, tmp_path: Path
) -> None:
    tuned = Embedder(base_model_path).load()  # our own copy: the shared fixture stays untouched
    anchors = [a for a, _ in PAIRS]
    positives = [p for _, p in PAIRS]

    def pair_similarity() -> float:
        return float((tuned.encode(anchors) * tuned.encode(positives)).sum(axis=1).mean())

    before_id = tuned.model_id
    before = pair_similarity()
    stats = tuned.fine_tune(
        PAIRS, batch_size=6, learning_rate=1e-4, max_steps=3, show_progress=False
    )
    assert stats["steps"] == 3
    assert stats["pairs"] == 6
    assert stats["loss"] == "MultipleNegativesRankingLoss"
    assert np.isfinite(stats["train_loss"])
    assert pair_similarity() > before
    assert tuned.model_id != before_id

    tuned.save(tmp_path / "tuned")
    meta = json.loads((tmp_path / "tuned" / META_FILE).read_text(encoding="utf-8"))
    assert meta["fine_tune"]["steps"] == 3
    assert meta["base_model"] == base_model_path
    loaded = Embedder.from_dir(tmp_path / "tuned")
    np.testing.assert_array_equal(loaded.encode(anchors), tuned.encode(anchors))
    assert loaded.fine_tune_stats["steps"] == 3
