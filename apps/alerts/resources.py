"""What the dashboard's views share, and the setup functions that open it (no service started)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flask import current_app
from prometheus_client import CollectorRegistry

from threefold.apps.alerts.config import AlertsConfig
from threefold.apps.alerts.state.redis_signals import RedisSignalStore
from threefold.apps.alerts.state.redis_store import RedisStateStore
from threefold.apps.alerts.state.signal_store import SignalStore
from threefold.apps.alerts.state.store import StateStore
from threefold.core.named_tokens import NamedTokens
from threefold.core.settings import reveal
from threefold.streaming.connections import RedisSettings, redis_client

EXTENSION = "threefold.alerts"
REDIS_FIX = "set REDIS_URL (or --redis-url) to the Redis the alerts consumer writes to"
# the dashboard's Redis socket timeout: a hung Redis holds a request this long (redis-py's
# default is 5 s) before the client's breaker answers the others at once; the live feed's XREAD
# blocks for under half of it (`web.api._keepalive_s`)
DASHBOARD_REDIS_TIMEOUT_S = 2.0


class AnalystTokens(NamedTokens):
    """Who an analyst token belongs to (THREEFOLD_ALERTS_ANALYST_TOKENS)."""

    setting = "analyst_tokens"
    variable = "THREEFOLD_ALERTS_ANALYST_TOKENS"
    people = "analysts"


@dataclass
class Resources:
    """The dashboard's settings, the consumer's state and signal stores (None: Redis not
    configured), who may correct labels (analysts) and the registry of its HTTP metrics."""

    settings: AlertsConfig
    store: StateStore | None
    signals: SignalStore | None = None
    analysts: AnalystTokens = field(default_factory=lambda: AnalystTokens({}))
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)


def open_state_store(settings: AlertsConfig, redis: RedisSettings) -> RedisStateStore:
    """The alerts state in the Redis of `redis` under `settings.redis_prefix` (connects lazily)."""
    return _state_store(settings, redis_client(redis, decode_responses=True))


def _state_store(settings: AlertsConfig, client: Any) -> RedisStateStore:
    return RedisStateStore(
        client,
        settings.redis_prefix,
        ttl_s=settings.state_ttl_s,
        webhook_limit=settings.webhook_outbox_max,
    )


def open_signal_store(settings: AlertsConfig, redis: RedisSettings) -> RedisSignalStore:
    """Analysts' signals in the Redis of `redis` under `settings.redis_prefix` (connects lazily)."""
    return RedisSignalStore(redis_client(redis, decode_responses=True), settings.redis_prefix)


def open_resources(settings: AlertsConfig, redis: RedisSettings) -> Resources:
    """The dashboard's resources; without a Redis URL the stores are None (it runs degraded).

    Both stores share one client with a `DASHBOARD_REDIS_TIMEOUT_S` socket timeout, so one
    breaker (`core.redis_breaker.breaker_for`) covers every dashboard call to Redis.
    """
    if not redis.url:
        return Resources(settings=settings, store=None, analysts=_analysts(settings))
    client = redis_client(redis, decode_responses=True, socket_timeout=DASHBOARD_REDIS_TIMEOUT_S)
    return Resources(
        settings=settings,
        store=_state_store(settings, client),
        signals=RedisSignalStore(client, settings.redis_prefix),
        analysts=_analysts(settings),
    )


def _analysts(settings: AlertsConfig) -> AnalystTokens:
    return AnalystTokens.parse(reveal(settings.analyst_tokens))


def current_resources() -> Resources:
    """The resources of the dashboard app handling the current request."""
    return current_app.extensions[EXTENSION]
