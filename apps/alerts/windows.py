"""Event-time windows: which windows a message falls in, when a window closes, what it counts."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from threefold.core.errors import ConfigError

SENTIMENTS = ("negative", "neutral", "positive")


@dataclass(frozen=True)
class WindowSpec:
    """Tumbling (slide == size) or sliding (slide < size) windows over event time, in seconds.

    A window [start, end) closes once the watermark (highest event time seen minus `grace_s`)
    reaches `end`; messages for a closed window are late and are not aggregated.
    """

    size_s: int
    slide_s: int
    grace_s: int = 0

    def __post_init__(self) -> None:
        if self.size_s <= 0 or self.slide_s <= 0 or self.size_s % self.slide_s:
            raise ConfigError(
                f"window size {self.size_s}s must be > 0 and a multiple of the slide "
                f"{self.slide_s}s (slide == size gives tumbling windows)"
            )
        if self.grace_s < 0:
            raise ConfigError(f"grace must be >= 0 seconds, found {self.grace_s}")

    def windows_for(self, event_time: float) -> list[tuple[int, int]]:
        """All windows [start, end) containing `event_time`, oldest first."""
        last_start = math.floor(event_time / self.slide_s) * self.slide_s
        count = self.size_s // self.slide_s
        starts = [last_start - i * self.slide_s for i in range(count - 1, -1, -1)]
        return [(start, start + self.size_s) for start in starts]

    def watermark(self, max_event_time: float) -> float:
        """Windows ending at or before this event time are closed."""
        return max_event_time - self.grace_s

    @staticmethod
    def is_closed(end: int, watermark: float | None) -> bool:
        return watermark is not None and end <= watermark


def keys_for(topic: str, entities: list[str]) -> list[str]:
    """Aggregation keys of one scored message: its topic and each entity."""
    return [f"topic:{topic}"] + [f"entity:{ticker}" for ticker in entities]


def split_key(key: str) -> tuple[str, str]:
    """'entity:ACME' -> ('entity', 'ACME')."""
    kind, _, name = key.partition(":")
    return kind, name


@dataclass(frozen=True)
class Entry:
    """One message's contribution to one key's window."""

    key: str
    start: int
    end: int
    message_id: str
    sentiment: str
    example: str | None = None  # the headline, kept as evidence when negative
    model: str = ""  # the models that scored the message (`model_tag`)


def model_tag(models: dict[str, str]) -> str:
    """One message's scoring models as text: {"topic": "t1", ...} -> "sentiment=s1,topic=t1"."""
    return ",".join(f"{task}={version}" for task, version in sorted(models.items()))


@dataclass
class WindowCounts:
    """What a key's window has seen so far."""

    key: str
    start: int
    end: int
    total: int = 0
    negative: int = 0
    neutral: int = 0
    positive: int = 0
    examples: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)  # model tags of its messages, sorted

    @property
    def negative_share(self) -> float:
        return self.negative / self.total if self.total else 0.0

    @property
    def model(self) -> str:
        """The models that scored it as one tag: "" unknown, "a+b" when a swap split it."""
        return "+".join(self.models)

    def to_dict(self) -> dict[str, object]:
        return {
            "key": self.key,
            "start": self.start,
            "end": self.end,
            "total": self.total,
            "negative": self.negative,
            "neutral": self.neutral,
            "positive": self.positive,
            "negative_share": round(self.negative_share, 4),
        }
