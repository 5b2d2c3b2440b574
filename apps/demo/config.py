"""The demo's settings: one run's options (`threefold demo`) and the hub page's app URLs."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import urlsplit

from threefold.core.errors import ConfigError
from threefold.streaming.connections import KafkaSettings, RedisSettings

HUB_ENV_PREFIX = "THREEFOLD_HUB_"


@dataclass(frozen=True)
class DemoOptions:
    """Settings of one demo run: the command's options and the services it may reuse.

    `redis` / `kafka` (REDIS_*, KAFKA_* settings) without a URL / bootstrap servers: the demo
    starts embedded ones. `progress`: tqdm bars for training and scoring on stderr (the
    command's default: only on a terminal).
    """

    cache_dir: Path
    check: bool = False
    host: str = "127.0.0.1"
    port_base: int | None = None
    retrain: bool = False
    timeout_s: float = 180.0
    progress: bool = True
    redis: RedisSettings = field(default_factory=RedisSettings)
    kafka: KafkaSettings = field(default_factory=KafkaSettings)


@dataclass(frozen=True)
class HubConfig:
    """Base URLs of the three apps (defaults: the `threefold serve ...` default ports).

    Loaded from THREEFOLD_HUB_QA_URL, _RECS_URL and _DASHBOARD_URL with
    `load_settings(HubConfig, HUB_ENV_PREFIX)`.
    """

    qa_url: str = "http://127.0.0.1:8001"
    recs_url: str = "http://127.0.0.1:8002"
    dashboard_url: str = "http://127.0.0.1:8003"

    def __post_init__(self) -> None:
        for item in fields(self):
            value = str(getattr(self, item.name)).rstrip("/")
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ConfigError(
                    f"{item.name} must be an http(s) base URL such as http://127.0.0.1:8000, "
                    f"found {value!r}"
                )
            object.__setattr__(self, item.name, value)
