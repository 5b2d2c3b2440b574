"""`threefold retrain recs`: train a candidate ranker on the base + newly logged events, gate it
against the live version on a fixed held-out gate set, publish it (current only when promoted).

The gate set is an event file of its own users (`data/gate_events.csv`: users no training event
belongs to; any training event equal to a gate event is dropped). Each gate user's last new
item is hidden; candidate and current version both rank the catalog for them with the same
interaction statistics, and NDCG@10 decides (`core.gate.judge`, configurable margin).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from threefold.apps.recs.catalog import Catalog
from threefold.apps.recs.evaluation import gate_split, score_model
from threefold.apps.recs.events import Event, sort_events
from threefold.apps.recs.ranker_store import RankerModel
from threefold.apps.recs.ranker_training import RankerSettings, train_ranker
from threefold.core.gate import judge, publish_gated, retrain_report
from threefold.core.registry import ModelEntry, data_fingerprint

logger = logging.getLogger(__name__)

RANKER_ENTRY = "recs-ranker"  # the entry's name in a registry ROOT
GATE_K = 10
GATE_METRIC = f"ndcg@{GATE_K}"


@dataclass(frozen=True)
class RetrainData:
    """What a retrain reads: the catalog, the base log, the newly logged events, the gate set."""

    catalog: Catalog
    base_events: Sequence[Event]
    new_events: Sequence[Event]
    gate_events: Sequence[Event]
    gate_source: str  # where the gate set came from (recorded in the version's metadata)

    def training_events(self) -> list[Event]:
        """Base + new events, without any event of the gate set (no training sees it)."""
        held_out = set(self.gate_events)
        return sort_events([e for e in (*self.base_events, *self.new_events) if e not in held_out])


def training_fingerprint(catalog: Catalog, events: Sequence[Event]) -> str:
    """What a ranker was trained on (catalog texts + events), for its version metadata."""
    return data_fingerprint(
        json.dumps([item.to_dict() for item in catalog], sort_keys=True),
        json.dumps([e.to_dict() for e in events], sort_keys=True),
    )


def publish_ranker(
    entry: ModelEntry, model: RankerModel, *, metadata: dict[str, Any] | None = None
) -> str:
    """Publish a trained ranker as the entry's new current version (`threefold recs build`)."""
    return entry.publish(lambda folder, _version: model.save(folder), metadata=metadata)


def retrain_ranker(
    entry: ModelEntry,
    data: RetrainData,
    *,
    settings: RankerSettings | None = None,
    base_model: str | None = None,
    margin: float = 0.0,
    created_by: str | None = None,
) -> dict[str, Any]:
    """Train, gate and publish a candidate; returns the `threefold retrain` JSON object."""
    training = data.training_events()
    split = gate_split(data.catalog, training, data.gate_events)
    candidate = train_ranker(list(data.catalog), training, settings=settings, base_model=base_model)
    candidate_scores = score_model(candidate, split, GATE_K)
    current_version = entry.current_version()
    current_scores = None
    if current_version is not None:
        current_scores = score_model(RankerModel.load(entry.current_dir()), split, GATE_K)
    decision = judge(
        GATE_METRIC,
        candidate_scores[GATE_METRIC],
        None if current_scores is None else current_scores[GATE_METRIC],
        margin=margin,
    )
    metadata: dict[str, Any] = {
        "data_fingerprint": training_fingerprint(data.catalog, training),
        "metrics": {f"gate_{name}": value for name, value in candidate_scores.items()},
        "current_metrics": current_scores,
        "gate_events": data.gate_source,
        "gate_fingerprint": data_fingerprint(
            json.dumps([e.to_dict() for e in data.gate_events], sort_keys=True)
        ),
        "gate_users": len(split.users),
        "training_events": {"base": len(data.base_events), "new": len(data.new_events)},
        "validation": candidate.info.get("validation", {}),
    }
    if created_by:
        metadata["created_by"] = created_by
    version = publish_gated(
        entry, lambda folder, _version: candidate.save(folder), decision, metadata=metadata
    )
    return retrain_report(
        "recs",
        entry,
        version,
        current_version,
        decision,
        training_events=metadata["training_events"],
        gate_users=len(split.users),
    )


def entry_for(registry: str | Path | None, model_dir: str | Path | None) -> ModelEntry:
    """The ranker's entry: ROOT/recs-ranker of `registry`, else `model_dir` (an entry folder)."""
    from threefold.core.errors import ConfigError

    if registry is not None:
        return ModelEntry(Path(registry) / RANKER_ENTRY)
    if model_dir is not None:
        path = Path(model_dir)
        if path.exists() and not ModelEntry.is_entry(path):
            raise ConfigError(
                f"{path} is a plain model folder, not a registry entry; retrain publishes "
                f"versions. Fix: pass --registry ROOT (the entry is ROOT/{RANKER_ENTRY}) and "
                f"serve THREEFOLD_RECS_MODEL_DIR=ROOT/{RANKER_ENTRY}"
            )
        return ModelEntry(path)
    raise ConfigError(
        "no model registry: pass --registry ROOT (or set THREEFOLD_MODELS_DIR; the ranker is "
        f"ROOT/{RANKER_ENTRY}) or set THREEFOLD_RECS_MODEL_DIR to the served entry"
    )
