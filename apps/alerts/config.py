"""Settings of the alerting consumer and dashboard (environment prefix THREEFOLD_ALERTS_)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from threefold.core.errors import ConfigError
from threefold.core.settings import Secret, coerce_fields, load_settings, public_dict

ENV_PREFIX = "THREEFOLD_ALERTS_"
DATA_DIR = Path(__file__).resolve().parent / "data"
DEFAULT_COMPANIES = DATA_DIR / "companies.csv"
DEFAULT_TRAINING_DATA = DATA_DIR / "headlines_sample.csv"
DEFAULT_GATE_DATA = DATA_DIR / "headlines_gate.csv"
TOPICS = ("earnings", "legal", "macro", "mergers", "personnel", "product")
WEBHOOK_OUTBOX_MAX = 10_000  # webhook deliveries waiting at most; the oldest is dropped beyond


@dataclass(frozen=True)
class AlertsConfig:
    """Topics, windowing, surge thresholds, model locations and service addresses.

    Times are seconds of event time (the message's `published_at`), except webhook timeouts.
    """

    input_topic: str = "news"
    scored_topic: str = "news-scored"
    alerts_topic: str = "news-alerts"
    dead_letter_topic: str = "news-dead-letter"
    group_id: str = "threefold-alerts"
    window_size_s: int = 300
    window_slide_s: int = 0  # 0 = tumbling (slide = size)
    grace_s: int = 60
    partition_idle_s: float = 30.0  # wall-clock s without messages before a partition is idle
    # wall-clock s of silence after which event time runs on with the wall clock, closing the
    # last windows; 0 = wait for the next message (e.g. replaying history with pauses)
    quiet_close_s: float = 60.0
    # event times later than the wall clock plus this are dead-lettered, so a feed whose clock
    # or time zone is wrong (CET read as UTC: an hour ahead) shows in the dead-letter topic
    # instead of counting in windows that close an hour late; 0 = no limit. 2 minutes covers
    # a drifting clock. (The watermark never passes the wall clock whatever this is.)
    max_future_s: float = 120.0
    # the dashboard's /healthz is 503 once a consumer's alerts have not reached Kafka this long
    publish_failing_limit_s: float = 60.0
    min_volume: int = 10
    z_threshold: float = 2.33  # one-sided, about p < 0.01
    share_margin: float = 0.15
    prior_negative_share: float = 0.2
    ewma_alpha: float = 0.3
    cooldown_s: int = 900
    max_examples: int = 3
    # a plain model folder (served as is) or a registry entry (its current version, hot-swapped)
    topic_model_dir: str = ""
    sentiment_model_dir: str = ""
    model_check_s: float = 2.0  # how often the consumer re-reads registry entries' pointers
    analyst_tokens: Secret | None = None  # name:token,... (corrections and alert verdicts)
    topic_labels: list[str] = field(default_factory=lambda: list(TOPICS))  # what may be chosen
    training_data: str = str(DEFAULT_TRAINING_DATA)  # base CSV of `threefold retrain alerts`
    gate_data: str = str(DEFAULT_GATE_DATA)  # fixed gate CSV no training ever sees
    gate_margin: float = 0.0  # a candidate may be this much worse (macro-F1) and still promoted
    companies_path: str = str(DEFAULT_COMPANIES)
    webhook_url: Secret | None = None  # may carry a token: never printed
    webhook_timeout_s: float = 5.0  # each attempt's limit, in all (sending and the answer)
    # the webhook outbox (Redis, shared by the replicas): its bound and the retry backoff,
    # doubling from webhook_backoff_s up to webhook_max_backoff_s between attempts
    webhook_outbox_max: int = WEBHOOK_OUTBOX_MAX
    webhook_backoff_s: float = 1.0
    webhook_max_backoff_s: float = 300.0
    redis_prefix: str = "threefold:alerts:"
    bootstrap_servers: str = field(default="", metadata={"env": "KAFKA_BOOTSTRAP_SERVERS"})
    metrics_port: int = 0  # 0 = no metrics HTTP server for the consumer
    metrics_addr: str = "127.0.0.1"  # 0.0.0.0 to let a scraper outside the host reach it
    max_batch: int = 64
    max_wait_ms: int = 200
    fetch_max_wait_ms: int = 100  # broker-side wait for data per fetch (kafka default 500)
    score_batch_size: int = 64
    torch_threads: int = 0  # 0 = torch's default; 1 is faster on a busy, oversubscribed CPU
    prepare_workers: int = 1  # batches scored at once (e.g. 2 with torch_threads 1 on 2 cores)
    state_ttl_s: int = 7 * 24 * 3600
    allowed_origins: list[str] = field(default_factory=list)
    rate_limit_per_minute: int | None = 600  # dashboard API, per client; 0 disables
    trusted_proxies: int = 0  # reverse proxies whose X-Forwarded-For is believed

    def __post_init__(self) -> None:
        coerce_fields(self)
        if self.window_slide_s == 0:
            object.__setattr__(self, "window_slide_s", self.window_size_s)
        positive = (
            "window_size_s",
            "window_slide_s",
            "min_volume",
            "max_batch",
            "max_wait_ms",
            "prepare_workers",
            "webhook_timeout_s",
            "webhook_outbox_max",
            "webhook_backoff_s",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0, found {getattr(self, name)!r}")
        non_negative = (
            "grace_s",
            "cooldown_s",
            "max_examples",
            "metrics_port",
            "share_margin",
            "model_check_s",
            "gate_margin",
            "trusted_proxies",
        )
        for name in (
            *non_negative,
            "torch_threads",
            "partition_idle_s",
            "quiet_close_s",
            "max_future_s",
            "publish_failing_limit_s",
        ):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, found {getattr(self, name)!r}")
        if self.window_size_s % self.window_slide_s:
            raise ConfigError(
                f"window_size_s ({self.window_size_s}) must be a multiple of window_slide_s "
                f"({self.window_slide_s}); use slide = size for tumbling windows"
            )
        if self.webhook_max_backoff_s < self.webhook_backoff_s:
            raise ConfigError(
                f"webhook_max_backoff_s ({self.webhook_max_backoff_s!r}) must be >= "
                f"webhook_backoff_s ({self.webhook_backoff_s!r}); raise the cap or lower the base"
            )
        if not 0 < self.ewma_alpha <= 1:
            raise ConfigError(f"ewma_alpha must be in (0, 1], found {self.ewma_alpha!r}")
        if not 0 < self.prior_negative_share < 1:
            raise ConfigError(
                f"prior_negative_share must be in (0, 1), found {self.prior_negative_share!r}"
            )
        if not self.redis_prefix.endswith(":"):
            object.__setattr__(self, "redis_prefix", self.redis_prefix + ":")
        topics = [self.input_topic, self.scored_topic, self.alerts_topic, self.dead_letter_topic]
        if len(set(topics)) != len(topics):
            raise ConfigError(f"input, scored, alerts and dead-letter topics must differ: {topics}")

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, prefix: str = ENV_PREFIX, **overrides: Any
    ) -> AlertsConfig:
        """Read THREEFOLD_ALERTS_<FIELD> and KAFKA_BOOTSTRAP_SERVERS (Redis: `RedisSettings`).

        Keyword overrides (e.g. from CLI flags) win over the environment; None means unset.
        """
        return load_settings(cls, prefix, environ, **overrides)

    def public_dict(self) -> dict[str, object]:
        """Settings safe to log or show: the webhook URL and URL passwords masked."""
        return public_dict(self)
