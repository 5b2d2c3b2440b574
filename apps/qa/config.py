"""Settings of the QA bot service, read from THREEFOLD_QA_* variables at entry points."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from threefold.core.errors import ConfigError
from threefold.core.settings import Secret, coerce_fields, load_settings

ENV_PREFIX = "THREEFOLD_QA_"
SAMPLE_KB = Path(__file__).resolve().parent / "data" / "store_faq.csv"
SAMPLE_QUERIES = Path(__file__).resolve().parent / "data" / "store_queries.csv"
SAMPLE_GATE_SET = Path(__file__).resolve().parent / "data" / "store_gate.csv"  # for retrain


def default_spool_dir() -> Path:
    """`<temp dir>/threefold-qa-spool`: survives a worker's kill, not the host's reboot."""
    return Path(tempfile.gettempdir()) / "threefold-qa-spool"


@dataclass(frozen=True)
class QAConfig:
    """Service settings. `threshold`/`ambiguity_margin` None = the values chosen at build time.

    When `bot_dir` holds no bot yet and `kb_path` is set, `threefold serve qa` builds one from it
    (by default from the shipped sample store FAQ, so it works out of the box). Redis is not
    here: it comes from REDIS_* (`streaming.connections.RedisSettings`).
    `rate_limit_per_minute` 0 or None disables the limit; an empty KB_PATH disables building.
    """

    bot_dir: str = "qa-bot"
    kb_path: str | None = str(SAMPLE_KB)
    admin_token: Secret | None = None
    allowed_origins: tuple[str, ...] = ()
    handoff_webhook: Secret | None = None
    handoff_timeout_s: float = 3.0
    agent_tokens: Secret | None = None  # name:token,name:token (the agent console's sign-in)
    agent_wait_timeout_s: float = 120.0  # then the customer is offered to leave a message
    # conversations of one client address waiting for a person at once (more: a 429); generous,
    # as customers behind one NAT share an address; 0 or None: no cap
    max_waiting_per_client: int | None = 20
    redis_prefix: str = "threefold:qa:"
    session_ttl_s: int = 1800
    record_max_entries: int = 100_000  # feedback/unanswered records kept (oldest dropped)
    record_ttl_days: int = 90  # a feedback/unanswered log expires this long after its last record
    redis_timeout_s: float = 2.0
    redis_retry_s: float = 5.0  # after a Redis connection failure, answer without it this long
    # feedback/unanswered/agent-reply records of a Redis outage wait here (fsync'd) for Redis;
    # past spool_max_mb new ones are kept in the worker's memory instead (fallback.py)
    spool_dir: Path = field(default_factory=default_spool_dir)
    spool_max_mb: int = 64
    # records Redis refused on their data are set aside in the spool's .rejected file, up to this
    # size; past it further ones are dropped, logged and counted (qa_records_rejected_lost_total)
    spool_rejected_max_mb: int = 16
    kb_versions_kept: int = 5  # published bot versions kept besides the current one
    follow_pointer_s: float = 1.0  # how often each worker looks for a new current bot version
    gate_set: str | None = None  # CSV question,faq_id that `threefold retrain qa` is judged on
    gate_margin: float = 0.0  # a candidate this much worse than the current one still passes
    max_message_chars: int = 1000
    max_body_bytes: int = 16_000
    rate_limit_per_minute: int | None = 120
    trusted_proxies: int = 0  # reverse proxies whose X-Forwarded-For is believed
    threshold: float | None = None
    ambiguity_margin: float | None = None
    handoff_after_failures: int = 2
    n_suggestions: int = 3

    def __post_init__(self) -> None:
        coerce_fields(self)
        for optional in ("rate_limit_per_minute", "max_waiting_per_client"):
            if getattr(self, optional) == 0:
                object.__setattr__(self, optional, None)
        positive = {
            "session_ttl_s": self.session_ttl_s,
            "record_max_entries": self.record_max_entries,
            "record_ttl_days": self.record_ttl_days,
            "spool_max_mb": self.spool_max_mb,
            "spool_rejected_max_mb": self.spool_rejected_max_mb,
            "kb_versions_kept": self.kb_versions_kept,
            "max_message_chars": self.max_message_chars,
            "max_body_bytes": self.max_body_bytes,
            "handoff_after_failures": self.handoff_after_failures,
        }
        for name, value in positive.items():
            if value < 1:
                raise ConfigError(f"{name} must be >= 1, found {value}")
        if self.rate_limit_per_minute is not None and self.rate_limit_per_minute < 1:
            raise ConfigError(
                f"rate_limit_per_minute must be >= 1 (or unset to disable), found "
                f"{self.rate_limit_per_minute}"
            )
        if self.max_waiting_per_client is not None and self.max_waiting_per_client < 1:
            raise ConfigError(
                f"max_waiting_per_client must be >= 1 (or 0 to disable), found "
                f"{self.max_waiting_per_client}"
            )
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(f"threshold must be within [0, 1], found {self.threshold}")
        if self.ambiguity_margin is not None and not 0.0 <= self.ambiguity_margin < 1.0:
            raise ConfigError(
                f"ambiguity_margin must be within [0, 1), found {self.ambiguity_margin}"
            )
        if self.redis_timeout_s <= 0 or self.redis_retry_s < 0:
            raise ConfigError(
                "redis_timeout_s must be > 0 and redis_retry_s >= 0, found "
                f"{self.redis_timeout_s} and {self.redis_retry_s}"
            )
        if self.follow_pointer_s < 0:
            raise ConfigError(
                f"follow_pointer_s must be >= 0 (0 = look on every request), found "
                f"{self.follow_pointer_s}"
            )
        if not -1.0 < self.gate_margin < 1.0:
            raise ConfigError(f"gate_margin must be within (-1, 1), found {self.gate_margin}")
        if self.handoff_timeout_s <= 0:
            raise ConfigError(f"handoff_timeout_s must be > 0, found {self.handoff_timeout_s}")
        if self.agent_wait_timeout_s <= 0:
            raise ConfigError(
                f"agent_wait_timeout_s must be > 0, found {self.agent_wait_timeout_s}"
            )
        if self.n_suggestions < 0:
            raise ConfigError(f"n_suggestions must be >= 0, found {self.n_suggestions}")

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, prefix: str = ENV_PREFIX, **overrides: Any
    ) -> QAConfig:
        """Read `<prefix><FIELD>` variables (e.g. THREEFOLD_QA_BOT_DIR)."""
        return load_settings(cls, prefix, environ, **overrides)
