"""Property-based fuzzing of every recs operation in /openapi.json, on the embedded Redis."""

from __future__ import annotations

import pytest
from support.openapi_fuzz import SLOW_EXAMPLES, fuzz_operation

from threefold.apps.recs.web.openapi import DOCUMENT
from threefold.core.openapi import document_routes

pytestmark = pytest.mark.integration
OPERATIONS = sorted(document_routes(DOCUMENT))


@pytest.fixture
def client(make_app, redis_url, redis_prefix, admin_headers):
    return make_app(redis_url=redis_url, redis_prefix=redis_prefix).test_client()


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_no_5xx_and_json_errors_for_drawn_requests(
    client, admin_headers, method: str, path: str
) -> None:
    fuzz_operation(client, DOCUMENT, method, path, auth_headers=(admin_headers,))


@pytest.mark.slow
@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_no_5xx_and_json_errors_for_many_drawn_requests(
    client, admin_headers, method: str, path: str
) -> None:
    fuzz_operation(
        client, DOCUMENT, method, path, auth_headers=(admin_headers,), max_examples=SLOW_EXAMPLES
    )
