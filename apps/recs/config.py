"""Settings of the recommendation service (read from THREEFOLD_RECS_* only at entry points)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from threefold.core.errors import ConfigError

DATA_DIR = Path(__file__).resolve().parent / "data"
DEFAULT_ITEMS = DATA_DIR / "catalog.csv"
DEFAULT_EVENTS = DATA_DIR / "events.csv"
ENV_PREFIX = "THREEFOLD_RECS_"


@dataclass
class RecsConfig:
    """Everything `create_app` needs; library classes take explicit arguments instead.

    `model_dir` is a folder written by `threefold recs build` (fine-tuned text ranker and
    combiner weights); without it the app serves the base embedder with a combiner tuned on the
    seed event log at start (`tune_on_start`, seconds on small logs) or default weights.
    `redis_url=None` starts an embedded redis-server unless `embedded_redis` is False, in which
    case the app runs without a cache.
    """

    items_path: Path = DEFAULT_ITEMS
    events_path: Path | None = DEFAULT_EVENTS
    model_dir: Path | None = None
    base_model: str | None = None
    tune_on_start: bool = True
    redis_url: str | None = None
    embedded_redis: bool = True
    redis_prefix: str = "threefold:recs:"
    redis_timeout_seconds: float = 0.25
    redis_retry_seconds: float = 5.0
    cache_ttl_seconds: int = 300
    admin_token: str | None = field(default=None, repr=False)
    allowed_origins: tuple[str, ...] = ()
    rate_limit_per_minute: int | None = None
    trusted_proxies: int = 0  # reverse proxies whose X-Forwarded-For is believed
    default_k: int = 10
    max_k: int = 100
    exclude_seen: bool = True
    exclude_purchased: bool = True
    default_diversity: float = 0.0
    candidate_pool: int = 200
    history_limit: int = 200
    max_body_bytes: int = 256_000
    max_batch_events: int = 500
    catalog_sync_seconds: float = 1.0

    def __post_init__(self) -> None:
        self.items_path = Path(self.items_path)
        self.events_path = Path(self.events_path) if self.events_path else None
        self.model_dir = Path(self.model_dir) if self.model_dir else None
        self.allowed_origins = tuple(self.allowed_origins)
        positive = ("cache_ttl_seconds", "default_k", "max_k", "candidate_pool", "history_limit")
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
        if self.redis_timeout_seconds <= 0 or self.redis_retry_seconds < 0:
            raise ConfigError(
                "redis_timeout_seconds must be > 0 and redis_retry_seconds >= 0, found "
                f"{self.redis_timeout_seconds!r} and {self.redis_retry_seconds!r}"
            )
        if not self.redis_prefix.endswith(":"):
            raise ConfigError(f"redis_prefix must end with ':', found {self.redis_prefix!r}")

    @classmethod
    def from_env(
        cls, prefix: str = ENV_PREFIX, environ: dict[str, str] | None = None
    ) -> RecsConfig:
        """Build from `<prefix><FIELD>` variables (e.g. ..._ADMIN_TOKEN) and REDIS_URL."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for spec in fields(cls):
            raw = env.get(prefix + spec.name.upper())
            if raw is None:
                continue
            values[spec.name] = _convert(spec.name, raw, getattr(cls, spec.name, None))
        if "redis_url" not in values and env.get("REDIS_URL"):
            values["redis_url"] = env["REDIS_URL"]
        return cls(**values)


def _convert(name: str, raw: str, default: object) -> object:
    text = raw.strip()
    if name in {"items_path", "events_path", "model_dir", "base_model", "redis_url", "admin_token"}:
        return text or None
    if name == "allowed_origins":
        return tuple(o.strip() for o in text.split(",") if o.strip())
    if name == "rate_limit_per_minute":
        return int(text) if text else None
    if isinstance(default, bool):
        if text.lower() in {"1", "true", "yes", "on"}:
            return True
        if text.lower() in {"0", "false", "no", "off"}:
            return False
        raise ConfigError(f"{ENV_PREFIX}{name.upper()} must be true or false, found {raw!r}")
    try:
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
    except ValueError:
        kind = type(default).__name__
        raise ConfigError(f"{ENV_PREFIX}{name.upper()} must be {kind}, found {raw!r}") from None
    return text
