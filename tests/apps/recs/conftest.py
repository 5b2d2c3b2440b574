"""Fixtures of the recommendation tests: the shipped sample data and app factories."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from threefold.apps.recs.catalog import Catalog, load_catalog
from threefold.apps.recs.config import DEFAULT_EVENTS, DEFAULT_ITEMS, RecsConfig
from threefold.apps.recs.events import Event, load_events

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
def make_app(embedder) -> Callable[..., object]:
    """`make_app(redis_url=..., **config)` -> a Flask app on the shipped data, shared encoder."""
    from threefold.apps.recs.api import create_app

    def make(**overrides: object):
        settings = {"embedded_redis": False, "admin_token": ADMIN_TOKEN, **overrides}
        return create_app(RecsConfig(**settings), encoder=embedder)

    return make
