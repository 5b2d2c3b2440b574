"""The evaluation gate: a candidate model goes live only when it is not worse than the live one.

`judge` compares the candidate's and the current version's scores on the same gate set (one that
no training saw); `publish_gated` records the candidate in the registry either way: promoted
(made current) or rejected (kept, with the reason, for an operator to inspect or force).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from threefold.core.registry import ModelEntry

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GateDecision:
    """The comparison on the gate set and its outcome."""

    metric: str
    candidate: float
    current: float | None
    margin: float
    higher_is_better: bool
    promoted: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def judge(
    metric: str,
    candidate: float,
    current: float | None,
    *,
    margin: float = 0.0,
    higher_is_better: bool = True,
) -> GateDecision:
    """Promote when there is no live version or the candidate is within `margin` of it or better.

    Higher is better: promoted when candidate >= current - margin (lower is better: candidate
    <= current + margin). A negative margin demands a strict improvement of at least |margin|.
    """
    candidate, margin = float(candidate), float(margin)
    if current is None:
        return GateDecision(
            metric, candidate, None, margin, higher_is_better, True,
            f"no live version to compare with; candidate {metric} {candidate:.4f}: promoted",
        )  # fmt: skip
    current = float(current)
    if higher_is_better:
        promoted = candidate >= current - margin
        sign, bound = (">=" if promoted else "<"), f"current {current:.4f} - margin {margin:.4f}"
    else:
        promoted = candidate <= current + margin
        sign, bound = ("<=" if promoted else ">"), f"current {current:.4f} + margin {margin:.4f}"
    outcome = "promoted" if promoted else "rejected, the live version stays"
    reason = f"candidate {metric} {candidate:.4f} {sign} {bound}: {outcome}"
    return GateDecision(metric, candidate, current, margin, higher_is_better, promoted, reason)


def publish_gated(
    entry: ModelEntry,
    write: Callable[[Path, str], None],
    decision: GateDecision,
    *,
    metadata: dict[str, Any] | None = None,
) -> str:
    """Publish the candidate (current only when promoted) with the decision in its metadata."""
    meta = dict(metadata or {})
    meta["gate"] = decision.to_dict()
    meta["metrics"] = {**meta.get("metrics", {}), decision.metric: decision.candidate}
    version = entry.publish(write, metadata=meta, activate=decision.promoted)
    logger.info(
        "gate %s for %s version %s: %s",
        "promoted" if decision.promoted else "rejected",
        entry.name,
        version,
        decision.reason,
        extra={"model": entry.name, "version": version, "promoted": decision.promoted},
    )
    return version


def retrain_report(
    app: str,
    entry: ModelEntry,
    candidate_version: str,
    current_version: str | None,
    decision: GateDecision,
    **details: Any,
) -> dict[str, Any]:
    """The JSON object every `threefold retrain <app>` prints (the app adds its `details`)."""
    return {
        "app": app,
        "model": entry.name,
        "candidate_version": candidate_version,
        "current_version": current_version,
        "gate": decision.to_dict(),
        "promoted": decision.promoted,
        "live_version": entry.current_version(),
        **details,
    }
