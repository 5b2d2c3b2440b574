"""Demo artefacts cached between runs: the alerts model, the FAQ bot, the recs catalog vectors.

Each artefact lives under the cache directory in a folder named by a key over its inputs (the
sample data's bytes, the base model and the training settings), so a changed sample or base
model builds a new one while an unchanged one is reused. Folders are built under a temporary
name and renamed when complete: an interrupted build never leaves a half-written artefact.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from threefold.core.errors import DataError
from threefold.core.files import staging_dir

logger = logging.getLogger(__name__)

META_FILE = "demo-meta.json"
RECS_COMBINER_FILE = "combiner.json"
# Few steps on the small shipped sample (one multi-task model, topic and sentiment heads, on the
# contrastive path): under a minute on two CPU cores, enough for the scenario's negative surge
# to be recognised.
ALERT_TASKS = ("topic", "sentiment")
CLASSIFIER_STEPS = 30
CLASSIFIER_SETTINGS: dict[str, Any] = {
    "learning_rate": 2e-4,
    "batch_size": 16,
    "max_length": 32,
    "eval_fraction": 0.0,
    "warmup_ratio": 0.0,
    "seed": 42,
}


def default_cache_dir(home: str | None) -> Path:
    """<home>/demo when `home` ($THREEFOLD_HOME) is set, else ~/.cache/threefold/demo."""
    if home:
        return Path(home).expanduser() / "demo"
    return Path.home() / ".cache" / "threefold" / "demo"


def cache_key(files: Sequence[Path], base_model: str, settings: Mapping[str, Any]) -> str:
    """A short hash of the files' bytes, the base model location and the settings."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        digest.update(Path(path).read_bytes())
    digest.update(base_model.encode())
    digest.update(json.dumps(dict(settings), sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


@dataclass
class CachedArtefact:
    """Where an artefact is and whether this run built it."""

    path: Path
    key: str
    built: bool


def cached_build(
    root: Path, name: str, key: str, build: Callable[[Path], None], *, rebuild: bool = False
) -> CachedArtefact:
    """Return root/<name>-<key>, calling `build(tmp_dir)` first when it is absent (or rebuild)."""
    target = root / f"{name}-{key}"
    if (target / META_FILE).is_file() and not rebuild:
        logger.info("reusing cached %s at %s", name, target)
        return CachedArtefact(target, key, built=False)
    scratch = staging_dir(target)
    try:
        build(scratch)
        (scratch / META_FILE).write_text(json.dumps({"name": name, "key": key}), encoding="utf-8")
        if rebuild and target.exists():
            shutil.rmtree(target)
        try:
            scratch.rename(target)
        except OSError:
            if not (target / META_FILE).is_file():
                raise
            # Another run finished the same artefact first; theirs equals ours.
            logger.info("%s was built concurrently at %s; using that one", name, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return CachedArtefact(target, key, built=True)


def _labelled_rows(path: Path, columns: Sequence[str]) -> list[dict[str, str]]:
    from threefold.core.tables import read_records

    records = read_records(path, required=("text", *columns), non_empty=("text", *columns))
    if not records:
        raise DataError("expected labelled headlines, found an empty file", path=str(path))
    return [{k: str(v) for k, v in r.values.items()} for r in records]


def train_alert_models(
    sample: Path,
    root: Path,
    *,
    base_model: str | None = None,
    retrain: bool = False,
    progress: bool = True,
) -> CachedArtefact:
    """One multi-task model, a topic and a sentiment head (root/alerts-multitask-<key>)."""
    from threefold.core.base_model import resolve_base_model

    base = resolve_base_model(base_model)
    settings = {"steps": CLASSIFIER_STEPS, **CLASSIFIER_SETTINGS}
    key = cache_key([sample], base, settings)

    def build(out: Path) -> None:
        from threefold.core.multitask import train_multitask
        from threefold.core.training_config import TrainingConfig

        rows = _labelled_rows(sample, ALERT_TASKS)
        logger.info("training the topic and sentiment model on %d headlines", len(rows))
        config = TrainingConfig(
            max_steps=CLASSIFIER_STEPS, output_progress=progress, **CLASSIFIER_SETTINGS
        )
        model = train_multitask(
            [r["text"] for r in rows],
            {task: [r[task] for r in rows] for task in ALERT_TASKS},
            base_model=base,
            config=config,
        )
        model.save(out)

    return cached_build(root, "alerts-multitask", key, build, rebuild=retrain)


def build_faq_bot(
    kb_path: Path, root: Path, embedder: Any, *, retrain: bool = False, progress: bool = True
) -> CachedArtefact:
    """The FAQ bot directory (root/qa-bot-<key>) built from `kb_path` with `embedder`."""
    from threefold.apps.qa.store import FORMAT_VERSION

    key = cache_key([kb_path], embedder.model_id, {"builder": "default", "format": FORMAT_VERSION})

    def build(out: Path) -> None:
        from threefold.apps.qa.builder import build_bot
        from threefold.apps.qa.knowledge_base import KnowledgeBase
        from threefold.apps.qa.store import BotStore

        bot = build_bot(KnowledgeBase.load(kb_path), embedder, show_progress=progress)
        BotStore(out / "bot").publish(bot)

    artefact = cached_build(root, "qa-bot", key, build, rebuild=retrain)
    return CachedArtefact(artefact.path / "bot", artefact.key, artefact.built)


def prepare_recs_cached(
    settings: Any, redis: Any, embedder: Any, root: Path, *, retrain: bool = False
) -> tuple[Any, CachedArtefact | None]:
    """`prepare_recs` with its results (catalog vectors, tuned combiner) cached on disk.

    A fresh Redis (the demo's embedded one) lacks both, so every run would embed the catalog and
    tune the combiner again. They live in root/recs-<key>, keyed by the catalog and seed log
    bytes, the encoder id and the settings that shape them; a cached copy is loaded into Redis
    first, where `prepare_recs` finds it. Returns (tuned combiner or None, the cached copy or
    None when Redis could not hand the results back to be cached).
    """
    from prometheus_client import CollectorRegistry

    from threefold.apps.recs.catalog import load_catalog
    from threefold.apps.recs.item_vectors import ItemVectors
    from threefold.apps.recs.metrics import RecsMetrics
    from threefold.apps.recs.resources import open_redis, prepare_recs

    inputs = [Path(p) for p in (settings.items_path, settings.events_path) if p is not None]
    shape = {"tune_on_start": settings.tune_on_start, "pool": settings.candidate_pool}
    key = cache_key(inputs, embedder.model_id, {"format": 2, **shape})
    target = root / f"recs-{key}"
    state = open_redis(settings, redis, RecsMetrics(CollectorRegistry()))
    model_id = embedder.model_id
    items = list(load_catalog(settings.items_path))
    if (target / META_FILE).is_file() and not retrain:
        saved = ItemVectors.load(target)
        if saved is not None:
            state.put_vectors(model_id, items, saved.matching(embedder.weights_id, items))
        combiner = target / RECS_COMBINER_FILE
        if combiner.is_file():
            state.put_combiner(model_id, json.loads(combiner.read_text(encoding="utf-8")))
    tuned = prepare_recs(settings, redis, encoder=embedder)

    vectors = state.get_vectors(model_id, items)
    if len(vectors) < len(items):
        logger.warning(
            "Redis returned %d of %d catalog vectors: not cached", len(vectors), len(items)
        )
        return tuned, None
    combiner = state.get_combiner(model_id)

    def build(out: Path) -> None:
        matrix = np.stack([vectors[item.item_id] for item in items])
        ItemVectors.of(embedder.weights_id, items, matrix).save(out)
        if combiner is not None:
            (out / RECS_COMBINER_FILE).write_text(json.dumps(combiner), encoding="utf-8")

    return tuned, cached_build(root, "recs", key, build, rebuild=retrain)
