"""Aggregate scored items into windows and decide surges (no broker: state is a StateStore).

Per batch: count every (key, window) entry idempotently -> advance the watermark -> close the
windows the watermark passed (final decision, then fold into the baseline) -> check the still
open windows this batch touched for an early surge (same rule, same alert id). Alerts are
claimed in the store's outbox; the caller publishes `store.pending_alerts()` and acknowledges
them.

Alerts depend on the data, not on partitioning or timing: the watermark is the minimum over
the input partitions (each one's highest event time, but never past the wall clock, minus the
grace: one headline stamped ahead cannot make the real-time ones after it late), windows
close in event-time order per key, and an open window is checked
early only once the window before it has closed (so its baseline is the one its final
decision will use) and, while the key's baseline is forming, only on overwhelming evidence
(surge.early_alert_allowed).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from threefold.apps.alerts.config import AlertsConfig
from threefold.apps.alerts.scoring import ScoredItem
from threefold.apps.alerts.state.store import (
    CLAIMED,
    CLOSED,
    COUNTED,
    StateStore,
    WindowClose,
    WindowRef,
)
from threefold.apps.alerts.surge import (
    Baseline,
    SurgeRule,
    build_alert,
    decide,
    early_alert_allowed,
)
from threefold.apps.alerts.windows import Entry, WindowCounts, WindowSpec, keys_for, model_tag

logger = logging.getLogger(__name__)
AHEAD_LOG_EVERY_S = 60.0  # at most one ahead-of-clock warning a minute, with the count
CLOSE_RETRIES = 5
NO_EVENT_TIME = 0.0  # a registered partition without messages yet


@dataclass
class PipelineResult:
    """What one batch did to the state."""

    late: int = 0
    ahead_of_clock: int = 0  # event time later than the wall clock plus the grace
    duplicates: int = 0
    windows_closed: int = 0
    alerts: list[dict] = field(default_factory=list)  # claimed by this batch
    suppressed: dict[str, int] = field(default_factory=dict)  # reason -> count
    partition_watermarks: dict[str, float] = field(default_factory=dict)  # advanced to
    watermark: float | None = None  # the store's, after this batch


class AlertPipeline:
    """Windows + surge rule + state; `process(scored)` marks late items and claims alerts."""

    def __init__(
        self,
        spec: WindowSpec,
        rule: SurgeRule,
        store: StateStore,
        *,
        alpha: float = 0.3,
        cooldown_s: int = 900,
        max_examples: int = 3,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.spec = spec
        self.rule = rule
        self.store = store
        self.alpha = alpha
        self.cooldown_s = cooldown_s
        self.max_examples = max_examples
        self.clock = clock
        self._ahead_unlogged = 0  # messages ahead of the clock since the last warning
        self._ahead_logged_at: float | None = None

    @classmethod
    def from_config(cls, config: AlertsConfig, store: StateStore) -> AlertPipeline:
        spec = WindowSpec(config.window_size_s, config.window_slide_s, config.grace_s)
        rule = SurgeRule(
            min_volume=config.min_volume,
            z_threshold=config.z_threshold,
            share_margin=config.share_margin,
            prior_share=config.prior_negative_share,
        )
        return cls(
            spec,
            rule,
            store,
            alpha=config.ewma_alpha,
            cooldown_s=config.cooldown_s,
            max_examples=config.max_examples,
        )

    def register_partitions(self, names: Sequence[str]) -> None:
        """Input partitions just assigned: the watermark waits for their first message."""
        self.store.advance_watermark(dict.fromkeys(names, NO_EVENT_TIME))

    def process(
        self,
        scored: Sequence[ScoredItem],
        partitions: Sequence[str] | None = None,
        *,
        idle_partitions: Sequence[str] = (),
    ) -> PipelineResult:
        """Aggregate and decide one batch.

        `partitions[i]` names the input partition of `scored[i]` (default: all the same one);
        `idle_partitions` stop holding the watermark back until their next message.
        """
        result = PipelineResult()
        now = self.clock()
        highest: dict[str, float] = {}
        for index, s in enumerate(scored):
            partition = partitions[index] if partitions is not None else "0"
            event_time = min(s.item.event_time, now)
            highest[partition] = max(event_time, highest.get(partition, NO_EVENT_TIME))
        touched = self._aggregate(scored, result) if scored else []
        self._report_ahead_of_clock(scored, now, result)
        result.partition_watermarks = {p: self.spec.watermark(t) for p, t in highest.items()}
        if highest or idle_partitions:
            watermark = self.store.advance_watermark(result.partition_watermarks, idle_partitions)
        else:
            watermark = self.store.watermark()
        result.watermark = watermark
        if watermark is None:
            return result
        # Close first, so the early checks compare against a baseline that is up to date.
        self._close_due(watermark, result)
        if scored:
            self._early([ref for ref in touched if self._early_check_due(ref, watermark)], result)
        return result

    def advance(
        self, watermarks: dict[str, float], idle_partitions: Sequence[str] = ()
    ) -> PipelineResult:
        """Move partition watermarks forward without messages (a stream gone quiet), never past
        the wall clock minus the grace, and close the windows that are then due, with their
        final surge decisions."""
        latest = self.spec.watermark(self.clock())
        watermarks = {p: min(mark, latest) for p, mark in watermarks.items()}
        result = PipelineResult(partition_watermarks=dict(watermarks))
        watermark = result.watermark = self.store.advance_watermark(watermarks, idle_partitions)
        if watermark is not None:
            self._close_due(watermark, result)
        return result

    def _report_ahead_of_clock(
        self, scored: Sequence[ScoredItem], now: float, result: PipelineResult
    ) -> None:
        """Count messages stamped more than the grace after the wall clock (a feed whose
        clock or time zone is wrong, or this host's clock behind) and log them, at most once
        a minute with the count since the last line. They are counted in their windows, which
        close when the clock gets there."""
        ahead = [s.item.event_time - now for s in scored]
        ahead = [seconds for seconds in ahead if seconds > self.spec.grace_s]
        if not ahead:
            return
        result.ahead_of_clock = len(ahead)
        self._ahead_unlogged += len(ahead)
        if self._ahead_logged_at is not None and now - self._ahead_logged_at < AHEAD_LOG_EVERY_S:
            return
        logger.warning(
            "%d message(s) stamped ahead of the clock since the last such line, now up to "
            "%.0f s (more than the grace, %d s): check the feed's clock and time zone (naive "
            "times are read as UTC), and that this host's clock is synchronised (NTP)",
            self._ahead_unlogged,
            max(ahead),
            self.spec.grace_s,
            extra={
                "fields": {
                    "event": "event_time_ahead_of_clock",
                    "messages": self._ahead_unlogged,
                    "most_ahead_s": round(max(ahead), 3),
                    "grace_s": self.spec.grace_s,
                }
            },
        )
        self._ahead_unlogged, self._ahead_logged_at = 0, now

    def _aggregate(self, scored: Sequence[ScoredItem], result: PipelineResult) -> list:
        entries: list[Entry] = []
        owners: list[int] = []
        for index, s in enumerate(scored):
            example = s.item.text if s.sentiment == "negative" else None
            model = model_tag(s.models)
            for key in keys_for(s.topic, s.entities):
                for start, end in self.spec.windows_for(s.item.event_time):
                    entries.append(Entry(key, start, end, s.item.id, s.sentiment, example, model))
                    owners.append(index)
        statuses = self.store.add_entries(entries, self.max_examples)
        closed_only = [True] * len(scored)
        counted = [False] * len(scored)
        touched = set()
        for entry, owner, status in zip(entries, owners, statuses, strict=True):
            if status != CLOSED:
                closed_only[owner] = False
            if status == COUNTED:
                counted[owner] = True
                touched.add((entry.key, entry.start, entry.end))
        for s, late in zip(scored, closed_only, strict=True):
            s.late = late
        result.late = sum(closed_only)
        result.duplicates = sum(
            1 for late, new in zip(closed_only, counted, strict=True) if not late and not new
        )
        return sorted(touched, key=lambda ref: (ref[2], ref[1], ref[0]))

    def _early_check_due(self, ref: WindowRef, watermark: float) -> bool:
        """Open, and the key's previous window (ending one slide earlier) has closed."""
        end = ref[2]
        return not self.spec.is_closed(end, watermark) and self.spec.is_closed(
            end - self.spec.slide_s, watermark
        )

    def _early(self, windows: list, result: PipelineResult) -> None:
        if not windows:
            return
        found, baselines = self.store.counts_and_baselines(windows)
        for c in found:
            if c.total < self.rule.min_volume:
                continue
            self._maybe_alert(c, baselines.get(c.key), "early", result)

    def _close_due(self, watermark: float, result: PipelineResult) -> None:
        """Close the windows the watermark passed, oldest first: each round takes the oldest due
        window of every key (a key's next window needs the baseline this one updates)."""
        due = self.store.due_windows(watermark)
        attempts: dict[WindowRef, int] = {}
        while due:
            oldest: dict[str, WindowRef] = {}
            later: list[WindowRef] = []
            for ref in due:
                if ref[0] in oldest:
                    later.append(ref)
                else:
                    oldest[ref[0]] = ref
            refs = list(oldest.values())
            windows, baselines = self.store.counts_and_baselines(refs)
            closes: list[WindowClose] = []
            for counts in windows:
                baseline = baselines.get(counts.key)
                self._maybe_alert(counts, baseline, "window_closed", result)
                new = (baseline or Baseline(0.0, 0.0, 0)).updated(counts, self.alpha)
                closes.append((counts, baseline.windows if baseline else 0, new))
            retry = []
            for ref, status in zip(refs, self.store.close_windows(closes), strict=True):
                if status >= 0:
                    result.windows_closed += status
                    continue
                attempts[ref] = attempts.get(ref, 0) + 1
                if attempts[ref] < CLOSE_RETRIES:
                    logger.info("baseline of %s changed while closing a window; retrying", ref[0])
                    retry.append(ref)
            due = sorted(retry + later, key=lambda r: (r[2], r[1], r[0]))

    def _maybe_alert(
        self, counts: WindowCounts, baseline: Baseline | None, stage: str, result: PipelineResult
    ) -> None:
        if stage == "early" and not early_alert_allowed(counts, baseline, self.rule):
            return
        decision = decide(counts, baseline, self.rule)
        if not decision.surge:
            return
        alert = build_alert(
            counts, decision, baseline, self.rule, stage=stage, detected_at=self.clock()
        )
        status = self.store.claim_alert(alert, self.cooldown_s)
        if status == CLAIMED:
            logger.info("surge for %s in window %s: %s", counts.key, counts.start, alert["summary"])
            result.alerts.append(alert)
        else:
            result.suppressed[status] = result.suppressed.get(status, 0) + 1
