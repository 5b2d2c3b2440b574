"""Surge decision: a window's negative share against the key's rolling (EWMA) baseline."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, replace

from threefold.apps.alerts.messages import format_time
from threefold.apps.alerts.windows import WindowCounts, split_key

MIN_P0 = 0.02  # keeps the z-test finite when the baseline has never seen a negative


@dataclass(frozen=True)
class Baseline:
    """EWMA of a key's negative share and volume over its closed windows (`windows` folded in).

    `model` is the scoring models' tag of the latest window (`WindowCounts.model`; "" from
    before they were recorded). A window scored by other models restarts the EWMA from that
    window: another model calls a different share negative. `model_from` is how many of
    `windows` came before the restart (0: none), so the baseline is forming again until
    `SurgeRule.warmup_windows` windows under the new models. `windows` only grows: closing
    compares it and sets it (state.store), so a restart keeps counting it.
    """

    share: float
    volume: float
    windows: int = 0
    model: str = ""
    model_from: int = 0

    def updated(self, counts: WindowCounts, alpha: float) -> Baseline:
        """Fold one closed, non-empty window into the baseline (restarted under new models)."""
        if counts.total == 0:
            return self
        model = counts.model or self.model
        if self.windows == 0 or self.model_changed(counts):
            return Baseline(
                counts.negative_share, float(counts.total), self.windows + 1, model, self.windows
            )
        share = alpha * counts.negative_share + (1 - alpha) * self.share
        volume = alpha * counts.total + (1 - alpha) * self.volume
        return Baseline(share, volume, self.windows + 1, model, self.model_from)

    def model_changed(self, counts: WindowCounts) -> bool:
        """Was `counts` scored by other models than this baseline's (both known)?"""
        return bool(self.model and counts.model and counts.model != self.model)


@dataclass(frozen=True)
class SurgeRule:
    """Alert when volume >= min_volume, z >= z_threshold and share - baseline >= share_margin.

    A key without history (no closed window) is judged against `prior_share`. Closed windows
    use this rule; windows still open alert early only on stronger evidence
    (`early_alert_allowed`): overwhelming (z >= `overwhelming_z`) while the key's baseline is
    forming (fewer than `warmup_windows` closed windows).
    """

    min_volume: int = 10
    z_threshold: float = 2.33
    share_margin: float = 0.15
    prior_share: float = 0.2
    warmup_windows: int = 3
    overwhelming_z: float = 5.0


@dataclass(frozen=True)
class Decision:
    """The numbers behind a surge decision."""

    surge: bool
    share: float
    baseline_share: float
    z: float
    wilson_lower: float
    reason: str


def z_score(negative: int, total: int, p0: float) -> float:
    """One-sided one-proportion z statistic of negative/total against p0."""
    if total == 0:
        return 0.0
    p0 = min(max(p0, MIN_P0), 1 - MIN_P0)
    return (negative / total - p0) / math.sqrt(p0 * (1 - p0) / total)


def wilson_lower(negative: int, total: int, z: float = 1.645) -> float:
    """Lower end of the Wilson score interval of negative/total (one-sided at z)."""
    if total == 0:
        return 0.0
    p = negative / total
    denom = 1 + z * z / total
    centre = p + z * z / (2 * total)
    spread = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total))
    return max(0.0, (centre - spread) / denom)


def decide(counts: WindowCounts, baseline: Baseline | None, rule: SurgeRule) -> Decision:
    """Is this window's negative share a surge over the baseline?"""
    p0 = rule.prior_share if baseline is None or baseline.windows == 0 else baseline.share
    share = counts.negative_share
    z = z_score(counts.negative, counts.total, p0)
    lower = wilson_lower(counts.negative, counts.total)
    if counts.total < rule.min_volume:
        reason = f"volume {counts.total} < {rule.min_volume}"
    elif z < rule.z_threshold:
        reason = f"z {z:.2f} < {rule.z_threshold}"
    elif share - p0 < rule.share_margin:
        reason = f"share {share:.2f} - baseline {p0:.2f} < margin {rule.share_margin}"
    else:
        reason = _model_change(counts, baseline, rule) or "surge"
    return Decision(reason == "surge", share, p0, z, lower, reason)


def _model_change(counts: WindowCounts, baseline: Baseline | None, rule: SurgeRule) -> str:
    """Why the baseline cannot judge this window since the scoring models changed ("": it can)."""
    if baseline is None or baseline.windows == 0:
        return ""
    if baseline.model_changed(counts):
        return f"scored by model {counts.model}, the baseline by {baseline.model}: baseline forming"
    under = baseline.windows - baseline.model_from
    if baseline.model_from and under < rule.warmup_windows:
        return (
            f"baseline forming under model {baseline.model}: {under} of {rule.warmup_windows} "
            "windows"
        )
    return ""


def early_alert_allowed(counts: WindowCounts, baseline: Baseline | None, rule: SurgeRule) -> bool:
    """May a window that is still open alert now?

    Only if it would still be a surge were the rest of the window, up to the key's usual volume
    (the baseline's), to bring no negative at all, with the share's Wilson lower bound at least
    `share_margin` over the baseline; while the baseline is forming, also only with
    z >= `overwhelming_z`. So an early alert is (almost) always one the window's final decision
    would raise too, whatever order the messages arrive in.
    """
    usual = math.ceil(baseline.volume) if baseline is not None and baseline.windows else 0
    missing = max(0, usual - counts.total)
    padded = replace(counts, total=counts.total + missing, neutral=counts.neutral + missing)
    decision = decide(padded, baseline, rule)
    if not decision.surge or decision.wilson_lower - decision.baseline_share < rule.share_margin:
        return False
    formed = baseline is not None and baseline.windows >= rule.warmup_windows
    return formed or decision.z >= rule.overwhelming_z


def alert_id(key: str, start: int, end: int) -> str:
    """Deterministic: the same key and window always give the same alert id."""
    digest = hashlib.sha256(f"{key}\x1f{start}\x1f{end}".encode()).hexdigest()
    return "a-" + digest[:24]


def build_alert(
    counts: WindowCounts,
    decision: Decision,
    baseline: Baseline | None,
    rule: SurgeRule,
    *,
    stage: str,
    detected_at: float,
) -> dict[str, object]:
    """The alert record published to the alerts topic, with its evidence."""
    kind, name = split_key(counts.key)
    return {
        "alert_id": alert_id(counts.key, counts.start, counts.end),
        "key": counts.key,
        "kind": kind,
        "name": name,
        "window_start": format_time(counts.start),
        "window_end": format_time(counts.end),
        "window_start_ts": counts.start,
        "window_end_ts": counts.end,
        "stage": stage,
        "detected_at": format_time(detected_at),
        "summary": (
            f"Negative sentiment surge for {kind} {name}: {counts.negative}/{counts.total} "
            f"negative ({decision.share:.0%}) vs baseline {decision.baseline_share:.0%}"
        ),
        "evidence": {
            "total": counts.total,
            "negative": counts.negative,
            "neutral": counts.neutral,
            "positive": counts.positive,
            "negative_share": round(decision.share, 4),
            "baseline_share": round(decision.baseline_share, 4),
            "baseline_volume": round(baseline.volume, 2) if baseline else None,
            "baseline_windows": baseline.windows if baseline else 0,
            "z": round(decision.z, 3),
            "wilson_lower": round(decision.wilson_lower, 4),
            "z_threshold": rule.z_threshold,
            "share_margin": rule.share_margin,
            "min_volume": rule.min_volume,
            "models": list(counts.models),
            "baseline_model": baseline.model if baseline else None,
            "examples": list(counts.examples),
        },
    }
