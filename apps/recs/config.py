"""Settings of the recommendation service (read from THREEFOLD_RECS_* only at entry points)."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from threefold.apps.recs.ab_buckets import Experiment
from threefold.core.errors import ConfigError
from threefold.core.settings import Secret, coerce_fields, load_settings

DATA_DIR = Path(__file__).resolve().parent / "data"
DEFAULT_ITEMS = DATA_DIR / "catalog.csv"
DEFAULT_EVENTS = DATA_DIR / "events.csv"
DEFAULT_GATE_EVENTS = DATA_DIR / "gate_events.csv"  # held-out users: the retrain gate set
ENV_PREFIX = "THREEFOLD_RECS_"


@dataclass(frozen=True)
class RecsConfig:
    """Everything the recs app needs besides Redis (`RedisSettings`, read from REDIS_*).

    `model_dir` is a registry entry (`threefold recs build --registry ROOT` or `threefold
    retrain recs`: its current version serves, and a promotion or rollback is picked up within
    `model_check_seconds` without a restart) or a plain folder written by `threefold recs build
    --out` (fine-tuned text ranker and combiner weights); without it the app serves the base
    embedder with the combiner `threefold serve recs` tuned on the seed event log
    (`tune_on_start`, seconds on small logs) or default weights. `spool_dir` holds events
    accepted while Redis was down until Redis takes them again (a persistent volume in
    production: see deploy/OPERATIONS.md).

    `ab_variants` runs an A/B test over versions of that registry entry (`current:90,v5:10`:
    "current" follows the pointer, other names are pinned versions, weights sum to 100; empty:
    no test); `ab_salt` names the experiment (users are bucketed by hash(salt, user id)).
    """

    items_path: Path = DEFAULT_ITEMS
    events_path: Path | None = DEFAULT_EVENTS
    model_dir: Path | None = None
    base_model: str | None = None
    tune_on_start: bool = True
    redis_prefix: str = "threefold:recs:"
    redis_timeout_seconds: float = 0.25
    redis_retry_seconds: float = 5.0
    cache_ttl_seconds: int = 300
    admin_token: Secret | None = None
    allowed_origins: tuple[str, ...] = ()
    # FAQ bot base URL: /store embeds its chat widget (that app must allow this origin for CORS)
    chat_url: str = ""
    rate_limit_per_minute: int | None = 600  # per client, all workers together; 0 disables
    trusted_proxies: int = 0  # reverse proxies whose X-Forwarded-For is believed
    default_k: int = 10
    max_k: int = 100
    exclude_seen: bool = True
    exclude_purchased: bool = True
    default_diversity: float = 0.0
    candidate_pool: int = 200
    # embed each request's history text with an int8 twin of a CPU encoder (item vectors stay
    # fp32): about half the per-request encoding time, at a small ndcg cost (README bench).
    # Unset: int8 from ranking_features.QUANTIZE_QUERIES_FROM catalog items (20,000), fp32 below
    quantize_queries: bool | None = None
    # the best new item (no interactions yet) by the sequence ranker's score takes the k-th
    # place of a list without one (needs a model from `recs build`); see rules.new_item_slot.
    # Off by default: it reaches cold items but costs warm users (apps/recs/README.md)
    new_item_slot: bool = False
    history_limit: int = 200
    max_body_bytes: int = 256_000
    max_batch_events: int = 500
    catalog_sync_seconds: float = 1.0
    # popularity / co-occurrence are recounted at most this often after new events, and a worker
    # reads the events other workers posted (the shared log in Redis) at most this often; at a
    # million items a count takes seconds of a core (in a child process): raise it for a steady
    # stream
    stats_refresh_seconds: float = 2.0
    shared_events_max: int = 1_000_000  # events the shared log in Redis keeps (about; oldest go)
    model_check_seconds: float = 2.0  # how often a worker reads a registry entry's pointer
    # events accepted while Redis is down wait here (`<temp dir>/threefold-recs-spool` by default)
    spool_dir: Path = field(
        default_factory=lambda: Path(tempfile.gettempdir()) / "threefold-recs-spool"
    )
    ab_variants: str = ""  # e.g. "current:90,v5:10"; see ab_buckets.py
    ab_salt: str = "recs-ab-1"  # a new salt reshuffles every user into new buckets

    def __post_init__(self) -> None:
        coerce_fields(self)
        positive = (
            "cache_ttl_seconds",
            "default_k",
            "max_k",
            "candidate_pool",
            "history_limit",
            "shared_events_max",
        )
        for name in (*positive, "max_body_bytes", "max_batch_events"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"{name} must be a positive integer, found {value!r}")
        if self.default_k > self.max_k:
            raise ConfigError(
                f"default_k ({self.default_k}) must not exceed max_k ({self.max_k}); "
                "raise max_k or lower default_k"
            )
        if not 0.0 <= self.default_diversity <= 1.0:
            raise ConfigError(
                f"default_diversity must be within [0, 1], found {self.default_diversity!r}"
            )
        if self.stats_refresh_seconds < 0:
            raise ConfigError(
                f"stats_refresh_seconds must be >= 0, found {self.stats_refresh_seconds!r}"
            )
        if self.model_check_seconds <= 0:
            raise ConfigError(
                f"model_check_seconds must be > 0, found {self.model_check_seconds!r}"
            )
        if self.redis_timeout_seconds <= 0 or self.redis_retry_seconds < 0:
            raise ConfigError(
                "redis_timeout_seconds must be > 0 and redis_retry_seconds >= 0, found "
                f"{self.redis_timeout_seconds!r} and {self.redis_retry_seconds!r}"
            )
        if self.chat_url and not self.chat_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"chat_url must be the FAQ bot's http(s) base URL, found {self.chat_url!r}; "
                "set THREEFOLD_RECS_CHAT_URL=http://127.0.0.1:8001 or leave it empty for no chat"
            )
        if not self.redis_prefix.endswith(":"):
            raise ConfigError(f"redis_prefix must end with ':', found {self.redis_prefix!r}")
        if self.experiment.active and self.model_dir is None:
            raise ConfigError(
                f"ab_variants={self.ab_variants!r} pins ranker versions, but model_dir is unset; "
                "set THREEFOLD_RECS_MODEL_DIR to the registry entry (ROOT/recs-ranker)"
            )

    @property
    def experiment(self) -> Experiment:
        """The A/B buckets of `ab_variants` (the control alone when it is empty)."""
        return Experiment.parse(self.ab_variants, self.ab_salt)

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, prefix: str = ENV_PREFIX, **overrides: Any
    ) -> RecsConfig:
        """Build from `<prefix><FIELD>` variables (e.g. ..._ADMIN_TOKEN)."""
        return load_settings(cls, prefix, environ, **overrides)
