"""A/B buckets over ranker versions: which variant ranks a user's list (pure, no I/O).

An experiment is written `current:90,v5:10`: "current" follows the registry pointer (the
control), every other name is a pinned version of the same entry, and the weights (integer
percentages) sum to 100. A user's bucket is a stable hash of (salt, user id) in 0..99, so the
same user gets the same variant in every request, worker and restart. The pinned variants own
contiguous bucket ranges from 0 up, in the order written; the control owns the rest, at the
top. So growing or shrinking the last pinned variant, or adding one at the end, moves exactly
the changed share of users between it and the control and nobody else. Shrinking or removing
a variant in the middle shifts the ranges of the variants after it (their users move too);
end a whole experiment by starting the next one with a new salt. Requests without a user id
get the control.

A pinned version missing from the registry (deleted, pruned, mistyped) does not stop the
workers: its variant's users get the control's lists, labelled `fallback_label(name)`
(`v5:fallback`), so the A/B counts keep them apart from both the variant and the control.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from threefold.core.errors import ConfigError

CONTROL = "current"
BUCKETS = 100
SETTING = "THREEFOLD_RECS_AB_VARIANTS"
EXAMPLE = f"{SETTING}='{CONTROL}:90,v5:10'"
FALLBACK_SUFFIX = ":fallback"  # a version name never holds ':' (core.registry), so no clash


def fallback_label(variant: str) -> str:
    """The label of the lists the control ranks for `variant` while its version is missing."""
    return f"{variant}{FALLBACK_SUFFIX}"


def served_label(variant: str, fallbacks: Mapping[str, str]) -> str:
    """The label lists and counts carry for `variant`: `fallback_label` while the control serves
    it (a variant in `fallbacks`), else the variant's own name."""
    return fallback_label(variant) if variant in fallbacks else variant


def fallback_of(label: str) -> str | None:
    """The pinned variant a `fallback_label` stands for; None for any other label."""
    return label.removesuffix(FALLBACK_SUFFIX) if label.endswith(FALLBACK_SUFFIX) else None


def fallback_warning(variant: str, reason: str) -> str:
    """What the workers' log and the A/B report say about a variant the control serves."""
    return (
        f"A/B variant {variant!r} falls back to the control: {reason}. Its users get the "
        f"control's lists, counted as {fallback_label(variant)!r}, not as {variant!r}. Fix: "
        f"restore the version's folder (running workers serve it within "
        f"THREEFOLD_RECS_MODEL_CHECK_SECONDS, no restart), or take {variant!r} out of {SETTING}"
    )


def bucket_of(salt: str, user_id: str) -> int:
    """The user's bucket 0..99: the first 8 bytes of sha256(salt NUL user id), modulo 100."""
    digest = hashlib.sha256(f"{salt}\0{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


@dataclass(frozen=True)
class Variant:
    """One arm: `name` ("current" or a pinned version) owns buckets [start, end)."""

    name: str
    weight: int
    start: int
    end: int

    @property
    def pinned(self) -> bool:
        return self.name != CONTROL

    def to_dict(self) -> dict[str, object]:
        return {
            "variant": self.name,
            "weight": self.weight,
            "buckets": [self.start, self.end - 1] if self.weight else [],
        }


@dataclass(frozen=True)
class Experiment:
    """The variants in their fixed order and the salt that names this experiment."""

    variants: tuple[Variant, ...]
    salt: str

    @classmethod
    def parse(cls, text: str, salt: str) -> Experiment:
        """`"current:90,v5:10"` -> Experiment; "" is the control alone (no experiment)."""
        if not salt.strip():
            raise ConfigError(
                "ab_salt is empty; expected a name for the experiment such as 'recs-ab-1' "
                "(changing it reshuffles every user). Set THREEFOLD_RECS_AB_SALT"
            )
        if not text.strip():
            return cls((Variant(CONTROL, BUCKETS, 0, BUCKETS),), salt)
        weights: dict[str, int] = {}
        for part in text.split(","):
            name, sep, raw_weight = part.strip().partition(":")
            name = name.strip()
            try:
                weight = int(raw_weight)
            except ValueError:
                weight = -1
            if not sep or not name or not 0 <= weight <= BUCKETS:
                raise ConfigError(
                    f"{SETTING} entry {part.strip()!r} is not NAME:PERCENT; expected e.g. "
                    f"{EXAMPLE} (a version name or '{CONTROL}', then a whole number 0..100)"
                )
            if name in weights:
                raise ConfigError(
                    f"{SETTING} names {name!r} twice in {text!r}; give each variant once"
                )
            weights[name] = weight
        total = sum(weights.values())
        if total != BUCKETS:
            terms = "+".join(str(weight) for weight in weights.values())
            raise ConfigError(
                f"{SETTING} weights sum to {total} ({terms}) in {text!r}; expected 100. "
                f"Fix the percentages, e.g. {EXAMPLE}"
            )
        if CONTROL not in weights:
            raise ConfigError(
                f"{SETTING}={text!r} has no '{CONTROL}' variant (the control, which follows the "
                f"registry pointer and serves requests without a user); add it, e.g. {EXAMPLE}"
            )
        variants: list[Variant] = []
        start = 0
        for name in [n for n in weights if n != CONTROL] + [CONTROL]:  # the control on top
            variants.append(Variant(name, weights[name], start, start + weights[name]))
            start += weights[name]
        return cls(tuple(variants), salt)

    @property
    def active(self) -> bool:
        """True when more than the control serves (an experiment is running)."""
        return any(v.pinned for v in self.variants)

    @property
    def pinned_versions(self) -> list[str]:
        return [v.name for v in self.variants if v.pinned]

    def __iter__(self) -> Iterator[Variant]:
        return iter(self.variants)

    def assign(self, user_id: str | None) -> str:
        """The variant that ranks `user_id`'s lists; the control for no user."""
        if not user_id:
            return CONTROL
        bucket = bucket_of(self.salt, user_id)
        for variant in self.variants:
            if variant.start <= bucket < variant.end:
                return variant.name
        raise AssertionError(f"bucket {bucket} is not covered by {self.variants}")

    def to_dict(self) -> dict[str, object]:
        return {
            "salt": self.salt,
            "control": CONTROL,
            "variants": [v.to_dict() for v in self.variants],
        }
