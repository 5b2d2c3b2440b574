"""The TextEncoder contract, run by every encoder: the real Embedder and the HashingEncoder."""

from __future__ import annotations

import numpy as np
import pytest

from threefold.core.encoder import HashingEncoder, TextEncoder
from threefold.core.errors import ConfigError

TEXTS = [
    "How do I reset my password?",
    "I forgot my password and cannot log in.",
    "Shipping to Canada takes five business days.",
    "",
]


@pytest.fixture(params=["embedder", "hashing"])
def encoder(request: pytest.FixtureRequest) -> TextEncoder:
    if request.param == "embedder":
        return request.getfixturevalue("embedder")
    return HashingEncoder(64)


class TestTextEncoderContract:
    """Behaviour every TextEncoder must show (run once per implementation)."""

    def test_is_a_text_encoder(self, encoder: TextEncoder) -> None:
        assert isinstance(encoder, TextEncoder)
        assert encoder.load() is encoder
        assert isinstance(encoder.dimension, int) and encoder.dimension > 0

    def test_encode_returns_normalized_float32_rows(self, encoder: TextEncoder) -> None:
        vectors = encoder.encode(TEXTS)
        assert vectors.dtype == np.float32
        assert vectors.shape == (len(TEXTS), encoder.dimension)
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)

    def test_empty_list_gives_empty_matrix(self, encoder: TextEncoder) -> None:
        assert encoder.encode([]).shape == (0, encoder.dimension)

    def test_vectors_are_deterministic_and_batch_independent(self, encoder: TextEncoder) -> None:
        whole = encoder.encode(TEXTS)
        np.testing.assert_allclose(encoder.encode(TEXTS, batch_size=1), whole, atol=1e-5)
        np.testing.assert_allclose(encoder.encode(TEXTS[:1])[0], whole[0], atol=1e-5)

    def test_related_texts_are_closer_than_unrelated(self, encoder: TextEncoder) -> None:
        question, paraphrase, unrelated = encoder.encode(TEXTS[:3])
        assert question @ paraphrase > question @ unrelated

    def test_model_id_is_a_stable_string(self, encoder: TextEncoder) -> None:
        assert isinstance(encoder.model_id, str) and encoder.model_id
        assert encoder.model_id == encoder.model_id

    def test_weights_id_is_part_of_the_model_id(self, encoder: TextEncoder) -> None:
        assert encoder.weights_id and encoder.model_id.endswith(encoder.weights_id)

    def test_bad_input_is_a_config_error(self, encoder: TextEncoder) -> None:
        with pytest.raises(ConfigError, match=r"encode\(\[text\]\)"):
            encoder.encode("one string")
        with pytest.raises(ConfigError, match="item 1 is int"):
            encoder.encode(["fine", 3])
        with pytest.raises(ConfigError, match="batch_size"):
            encoder.encode(["fine"], batch_size=0)


def test_hashing_encoder_ids_differ_by_settings() -> None:
    assert HashingEncoder(64).model_id != HashingEncoder(128).model_id
    assert HashingEncoder(64).model_id != HashingEncoder(64, ngram=4).model_id


def test_hashing_encoder_validates_settings() -> None:
    with pytest.raises(ConfigError, match="dimension must be a positive int"):
        HashingEncoder(0)
