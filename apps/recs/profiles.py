"""User profiles from history: recency- and event-weighted item embeddings and history text."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from threefold.apps.recs.catalog import Item
from threefold.apps.recs.events import EVENT_WEIGHTS, Event

PROFILE_HALF_LIFE = 10.0
RECENT_HALF_LIFE = 2.0
RECENT_ITEMS = 10
HISTORY_TEXT_ITEMS = 8


def recency_weights(
    events: Sequence[Event], *, half_life: float = PROFILE_HALF_LIFE, use_event_type: bool = True
) -> np.ndarray:
    """Weight per event (oldest first): event weight x 0.5 ** (steps back from newest / half-life).

    Recency counts positions, not seconds, so a user who comes back after months is judged
    by what they did last, and offline replays behave like live traffic.
    """
    n = len(events)
    steps_back = np.arange(n - 1, -1, -1, dtype=np.float32)
    decay = np.power(0.5, steps_back / half_life)
    if use_event_type:
        decay = decay * np.array([EVENT_WEIGHTS[e.event] for e in events], dtype=np.float32)
    return decay.astype(np.float32)


def history_text(items: Sequence[Item], *, max_items: int = HISTORY_TEXT_ITEMS) -> str:
    """The text the ranker reads for a user: newest items' titles and categories, newest first."""
    recent = list(dict.fromkeys(reversed(items)))[:max_items]
    return " | ".join(f"{item.title} ({', '.join(item.categories)})" for item in recent)


@dataclass
class UserProfile:
    """What the ranker knows about one user."""

    user_id: str
    events: list[Event]
    positions: list[int]
    weights: np.ndarray
    recent_weights: np.ndarray
    vector: np.ndarray | None
    text: str
    category_preference: dict[str, float]

    @property
    def is_cold(self) -> bool:
        return not self.positions


def build_profile(
    user_id: str,
    events: Sequence[Event],
    *,
    position: Mapping[str, int],
    vectors: np.ndarray,
    items: Mapping[str, Item],
) -> UserProfile:
    """Profile from a user's events (oldest first); events on unknown items are skipped."""
    kept = [e for e in events if e.item_id in position and e.item_id in items]
    positions = [position[e.item_id] for e in kept]
    weights = recency_weights(kept)
    recent = recency_weights(kept, half_life=RECENT_HALF_LIFE)
    if len(recent) > RECENT_ITEMS:
        recent[:-RECENT_ITEMS] = 0.0
    vector = None
    if positions:
        mean = (weights[:, None] * vectors[positions]).sum(axis=0)
        norm = float(np.linalg.norm(mean))
        vector = (mean / norm).astype(np.float32) if norm > 0 else None
    preference: dict[str, float] = {}
    for event, weight in zip(kept, weights, strict=True):
        categories = items[event.item_id].categories
        for category in categories:
            preference[category] = preference.get(category, 0.0) + float(weight) / len(categories)
    total = sum(preference.values())
    if total > 0:
        preference = {c: v / total for c, v in preference.items()}
    return UserProfile(
        user_id=user_id,
        events=kept,
        positions=positions,
        weights=weights,
        recent_weights=recent,
        vector=vector,
        text=history_text([items[e.item_id] for e in kept]),
        category_preference=preference,
    )
