"""Fixtures of the recommendation tests: the shipped sample data and app factories."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from threefold.apps.recs.catalog import Catalog, load_catalog
from threefold.apps.recs.config import DEFAULT_EVENTS, DEFAULT_ITEMS, RecsConfig
from threefold.apps.recs.events import Event, load_events
from threefold.apps.recs.resources import TunedCombiner, open_resources, prepare_recs
from threefold.streaming.connections import RedisSettings

ADMIN_TOKEN = "test-admin-token"


@pytest.fixture
def catalog() -> Catalog:
    """A fresh copy of the shipped catalog (tests may add or remove items)."""
    return load_catalog(DEFAULT_ITEMS)


@pytest.fixture(scope="session")
def sample_events() -> list[Event]:
    return load_events(DEFAULT_EVENTS, known_items=load_catalog(DEFAULT_ITEMS))


@pytest.fixture(scope="session")
def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture(scope="session")
def tuned_combiner(embedder) -> TunedCombiner | None:
    """The combiner `threefold serve recs` tunes on the shipped seed log (tuned once here)."""
    return prepare_recs(RecsConfig(), RedisSettings(), encoder=embedder)


@pytest.fixture(scope="session")
def make_app(embedder, tuned_combiner, tmp_path_factory) -> Callable[..., object]:
    """`make_app(redis_url=..., **config)` -> a Flask app on the shipped data, shared encoder,
    opened as `threefold serve recs` opens it after preparing (combiner tuned on the seed log).

    No rate limit unless a test sets `rate_limit_per_minute`; each app spools to its own folder."""
    from threefold.apps.recs.web import create_app

    def make(redis_url: str | None = None, **overrides: object):
        defaults = {
            "admin_token": ADMIN_TOKEN,
            "rate_limit_per_minute": None,
            "spool_dir": tmp_path_factory.mktemp("spool"),
        }
        settings = RecsConfig(**{**defaults, **overrides})
        resources = open_resources(
            settings,
            RedisSettings(url=redis_url),
            encoder=embedder,
            tuned=tuned_combiner if settings.tune_on_start else None,
        )
        return create_app(settings, resources)

    return make
