"""Session-wide model fixtures: the base model is resolved and loaded once per test run."""

from __future__ import annotations

import pytest

from threefold.core.base_model import resolve_base_model


@pytest.fixture(scope="session")
def base_model_path() -> str:
    """Local directory of the packaged all-MiniLM-L6-v2."""
    return resolve_base_model(None)


@pytest.fixture(scope="session")
def embedder(base_model_path: str):
    """A loaded Embedder shared by the whole run; never fine-tune it in place."""
    from threefold.core.embedder import Embedder

    return Embedder(base_model_path).load()


@pytest.fixture(scope="session")
def cpu_embedder(embedder, base_model_path: str):
    """`embedder` on a CPU machine; a CPU copy of it on a GPU one (int8 is CPU only)."""
    from threefold.core.embedder import Embedder

    return embedder if embedder.device == "cpu" else Embedder(base_model_path, device="cpu").load()
