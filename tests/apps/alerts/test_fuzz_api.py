"""Property-based fuzzing of every dashboard operation in /openapi.json, on the embedded Redis."""

from __future__ import annotations

import pytest
from support.openapi_fuzz import SLOW_EXAMPLES, fuzz_operation

from threefold.apps.alerts.config import AlertsConfig
from threefold.apps.alerts.pipeline import AlertPipeline
from threefold.apps.alerts.resources import open_resources
from threefold.apps.alerts.web import create_app
from threefold.apps.alerts.web.openapi import DOCUMENT
from threefold.core.openapi import document_routes

from .conftest import calm_then_surge

pytestmark = pytest.mark.integration
OPERATIONS = sorted(document_routes(DOCUMENT))
TOKENS = ({"Authorization": "Bearer ana-secret"}, {"Authorization": "Bearer wrong"})


@pytest.fixture
def client(redis_prefix, redis_settings, redis_store):
    """The dashboard on a Redis holding windows and one published surge alert."""
    config = AlertsConfig(
        redis_prefix=redis_prefix,
        grace_s=0,
        rate_limit_per_minute=None,
        analyst_tokens="ana:ana-secret",
    )
    pipeline = AlertPipeline.from_config(config, redis_store)
    items = calm_then_surge()
    for i in range(0, len(items), 20):
        pipeline.process(items[i : i + 20])
    redis_store.ack_alerts(redis_store.pending_alerts())
    return create_app(config, open_resources(config, redis_settings)).test_client()


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_no_5xx_and_json_errors_for_drawn_requests(client, method: str, path: str) -> None:
    fuzz_operation(client, DOCUMENT, method, path, auth_headers=TOKENS)


@pytest.mark.slow
@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_no_5xx_and_json_errors_for_many_drawn_requests(client, method: str, path: str) -> None:
    fuzz_operation(client, DOCUMENT, method, path, auth_headers=TOKENS, max_examples=SLOW_EXAMPLES)
