"""Property-based fuzzing of every QA bot operation in /openapi.json, on the embedded Redis."""

from __future__ import annotations

import pytest
from support.openapi_fuzz import SLOW_EXAMPLES, fuzz_operation

from threefold.apps.qa.web.openapi import DOCUMENT
from threefold.core.openapi import document_routes

pytestmark = pytest.mark.integration
OPERATIONS = sorted(document_routes(DOCUMENT))
AGENT_TOKENS = "alice:tok-alice-1"
TOKENS = ({"Authorization": "Bearer test-admin-token"}, {"Authorization": "Bearer tok-alice-1"})


@pytest.fixture
def client(make_app):
    return make_app(agent_tokens=AGENT_TOKENS, agent_wait_timeout_s=0.05).test_client()


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_no_5xx_and_json_errors_for_drawn_requests(client, method: str, path: str) -> None:
    fuzz_operation(client, DOCUMENT, method, path, auth_headers=TOKENS)


@pytest.mark.slow
@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_no_5xx_and_json_errors_for_many_drawn_requests(client, method: str, path: str) -> None:
    fuzz_operation(client, DOCUMENT, method, path, auth_headers=TOKENS, max_examples=SLOW_EXAMPLES)
