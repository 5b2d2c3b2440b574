"""Pick the compute device: CUDA when torch sees a GPU, the CPU otherwise; FAISS GPU detection."""

from __future__ import annotations

import logging

from threefold.core.errors import ConfigError

logger = logging.getLogger(__name__)

_KNOWN = ("cpu", "cuda", "mps")


def torch_device(prefer: str | None = None) -> str:
    """Return the torch device to use: `prefer` when given (validated), else "cuda" or "cpu".

    `prefer` may be "cpu", "cuda", "cuda:N" or "mps". Asking for CUDA on a machine without it
    raises ConfigError rather than failing later inside torch.
    """
    import torch

    if prefer is None or prefer == "" or prefer == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    name = str(prefer).strip().lower()
    kind, _, index = name.partition(":")
    if kind not in _KNOWN or (index and not index.isdigit()):
        raise ConfigError(
            f"device {prefer!r} is not a device threefold knows; expected one of "
            f"{sorted(_KNOWN)} (or 'cuda:N'), or leave it unset to pick automatically."
        )
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device {prefer!r} was asked for but torch sees no CUDA GPU "
                f"(torch {torch.__version__}). Fix: use device 'cpu', or install a CUDA build "
                "of torch on a machine with an NVIDIA GPU (see README)."
            )
        if index and int(index) >= torch.cuda.device_count():
            raise ConfigError(
                f"device {prefer!r} was asked for but only {torch.cuda.device_count()} "
                "CUDA device(s) exist. Fix: pick an index below that."
            )
    if kind == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {prefer!r} was asked for but MPS is not available here.")
    return name


def faiss_gpu_available() -> bool:
    """True when the installed faiss has GPU support (faiss-gpu) and sees at least one GPU."""
    try:
        import faiss
    except ImportError:
        return False
    if not hasattr(faiss, "StandardGpuResources"):
        return False
    try:
        return faiss.get_num_gpus() > 0
    except Exception:  # a broken CUDA driver must not break CPU users
        logger.warning("faiss has GPU support but could not count GPUs; using the CPU")
        return False


def set_torch_threads(count: int) -> None:
    """Limit torch's intra-op threads for the whole process (0 keeps torch's default).

    Process-wide, so only entry points (CLI commands, app mains) call it.
    """
    if count > 0:
        import torch

        torch.set_num_threads(count)
