"""torch_device / faiss_gpu_available: automatic choice, explicit choice, clear errors."""

from __future__ import annotations

import faiss
import pytest
import torch

from threefold.core.device import faiss_gpu_available, set_torch_threads, torch_device
from threefold.core.errors import ConfigError


def test_automatic_choice_follows_torch() -> None:
    assert torch_device() == ("cuda" if torch.cuda.is_available() else "cpu")
    assert torch_device("auto") == torch_device()


def test_prefer_cpu_is_honoured() -> None:
    assert torch_device("cpu") == "cpu"
    assert torch_device(" CPU ") == "cpu"


def test_unknown_device_lists_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"'tpu' is not a device .*\['cpu', 'cuda', 'mps'\]"):
        torch_device("tpu")
    with pytest.raises(ConfigError, match="cuda:x"):
        torch_device("cuda:x")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_without_gpu_says_how_to_fix() -> None:
    with pytest.raises(ConfigError, match="torch sees no CUDA GPU"):
        torch_device("cuda")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_index_out_of_range() -> None:
    assert torch_device("cuda:0") == "cuda:0"
    with pytest.raises(ConfigError, match="CUDA device"):
        torch_device(f"cuda:{torch.cuda.device_count()}")


def test_faiss_gpu_available_matches_faiss() -> None:
    expected = hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
    assert faiss_gpu_available() is expected


def test_set_torch_threads_limits_the_process_and_zero_keeps_it() -> None:
    import torch

    before = torch.get_num_threads()
    try:
        set_torch_threads(1)
        assert torch.get_num_threads() == 1
        set_torch_threads(0)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
