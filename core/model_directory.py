"""What every saved model directory of the core shares, whatever its heads.

A directory holds weights, a tokenizer and one JSON metadata file whose common part is written
by `training_record()` and read back by `read_meta()` / `record_from_meta()`. Loading picks the
device and int8 with `inference_device()`, checks the weights against the recorded version with
`check_version()` and ends with `ready_for_inference()`. The single-label classifier
(`classifier`) and the multi-task model (`multitask`) both go through here.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import transformers
from torch import nn

from threefold.core.device import torch_device
from threefold.core.errors import ConfigError, ModelError
from threefold.core.training_config import TrainingConfig

RECORD_KEYS = ("format_version", "base_model", "max_length", "version")


def read_meta(
    path: Path,
    meta_file: str,
    *,
    format_version: int,
    required: Sequence[str],
    kind: str,
    made_by: str,
) -> dict:
    """The metadata object of directory `path`; ModelError says what is missing or corrupt.

    `kind` names the model in messages ("classifier"); `made_by` says what writes one.
    """
    if not path.is_dir():
        raise ModelError(
            f"{kind} directory {path} does not exist or is not a directory. Fix: check the "
            f"path, or write one with {made_by}"
        )
    meta_path = path / meta_file
    if not meta_path.is_file():
        found = sorted(p.name for p in path.iterdir())[:10]
        raise ModelError(
            f"{meta_path} is missing, so {path} is not a threefold {kind} (found {found}). "
            f"Fix: point at a directory written by {made_by}"
        )
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(
            f"{meta_path} is corrupt (not valid JSON: {exc}). "
            "Fix: copy the whole directory again, or retrain"
        ) from exc
    if not isinstance(meta, dict):
        raise ModelError(f"{meta_path} is corrupt: expected a JSON object")
    missing = [key for key in (*RECORD_KEYS, *required) if key not in meta]
    if missing:
        raise ModelError(
            f"{meta_path} lacks {missing}; it is corrupt or from another tool. "
            "Fix: copy the whole directory again, or retrain"
        )
    if meta["format_version"] != format_version:
        raise ModelError(
            f"{meta_path} has format_version {meta['format_version']!r}; this threefold "
            f"reads {format_version}. Fix: retrain with this version"
        )
    return meta


def inference_device(meta: dict, quantize: bool | None, device: str | None) -> tuple[str, bool]:
    """(device, int8) for a load: `quantize=None` follows the recorded decision on the CPU."""
    if quantize and device not in (None, "cpu"):
        raise ConfigError(
            f"int8 quantization runs on the CPU only; found device={device!r}. "
            "Fix: drop --quantize (quantize=True), or use device='cpu'"
        )
    device = "cpu" if quantize else torch_device(device)
    if quantize is None:
        quantize = quantize_by_default(meta.get("metrics"), device)
    return device, bool(quantize)


def check_version(
    model: nn.Module, labels: Sequence[str], meta: dict, *, weights: Path, meta_path: Path
) -> None:
    """ModelError unless the weights hash to the version recorded beside them."""
    found = weights_fingerprint(model, labels)
    if found != meta["version"]:
        raise ModelError(
            f"the weights in {weights} do not match version {meta['version']!r} recorded in "
            f"{meta_path} (found {found!r}): the files were changed or corrupted. "
            "Fix: copy the whole directory again, or retrain"
        )


def ready_for_inference(model: nn.Module, quantize: bool, device: str) -> nn.Module:
    """`model` in eval mode, int8 when asked, on `device`."""
    model.eval()
    if quantize:
        model = quantize_dynamic_int8(model)
    return model.to(device)


def training_record(model: Any) -> dict:
    """The metadata every directory carries, from a loaded or trained model object."""
    return {
        "base_model": model.base_model,
        "max_length": model.max_length,
        "version": model.version,
        "created_at": model.created_at,
        "train_seconds": model.train_seconds,
        "training_config": model.config.to_dict() if model.config else None,
        "metrics": model.metrics,
        "libraries": library_versions(),
    }


def record_from_meta(meta: dict, meta_path: Path) -> dict[str, Any]:
    """Constructor keywords of the training record read back from `meta`."""
    config = meta.get("training_config")
    try:
        config = TrainingConfig.from_dict(config) if isinstance(config, dict) else None
    except ConfigError as exc:
        raise ModelError(f"{meta_path} has an unusable training_config: {exc}") from exc
    try:
        max_length = int(meta["max_length"])
    except (TypeError, ValueError) as exc:
        raise ModelError(
            f"{meta_path} is corrupt: max_length must be an integer; found {meta['max_length']!r}"
        ) from exc
    return {
        "base_model": meta["base_model"],
        "max_length": max_length,
        "metrics": meta.get("metrics") or {},
        "config": config,
        "train_seconds": meta.get("train_seconds"),
        "created_at": meta.get("created_at"),
        "version": meta["version"],
    }


def weights_fingerprint(model: nn.Module, labels: Sequence[str]) -> str:
    """Short content hash of the weights and label list: the model's version."""
    digest = hashlib.sha256(json.dumps(list(labels)).encode("utf-8"))
    for name, tensor in sorted(model.state_dict().items()):
        if not isinstance(tensor, torch.Tensor) or tensor.is_quantized:
            continue
        digest.update(name.encode("utf-8"))
        digest.update(
            tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        )
    return digest.hexdigest()[:12]


def quantize_by_default(metrics: dict | None, device: str) -> bool:
    """The recorded int8 decision (`metrics.int8.default_on_cpu`), on the CPU only."""
    recorded = ((metrics or {}).get("int8")) or {}
    return device == "cpu" and bool(recorded.get("default_on_cpu"))


def quantize_dynamic_int8(model: nn.Module) -> nn.Module:
    """int8 dynamic quantization of every nn.Linear (CPU inference)."""
    with warnings.catch_warnings():
        # torch marks torch.ao.quantization deprecated (moving to torchao); it still works.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantiz.*", category=UserWarning)
        quantized = torch.ao.quantization.quantize_dynamic(
            model.to("cpu"), {nn.Linear}, dtype=torch.qint8
        )
    return quantized.eval()


def library_versions() -> dict[str, str]:
    """Versions of threefold, torch, transformers and Python, recorded beside saved weights."""
    try:
        threefold_version = importlib.metadata.version("threefold")
    except importlib.metadata.PackageNotFoundError:
        threefold_version = "unknown"
    return {
        "threefold": threefold_version,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }
