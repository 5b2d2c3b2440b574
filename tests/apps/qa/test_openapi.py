"""The QA bot's /openapi.json lists exactly the Flask routes under /api/."""

from __future__ import annotations

from threefold.apps.qa.web.openapi import DOCUMENT
from threefold.core.openapi import document_routes, flask_api_routes


def test_openapi_document_matches_the_api_routes(make_app) -> None:
    app = make_app(redis_url=None)
    response = app.test_client().get("/openapi.json")
    assert response.status_code == 200
    assert response.get_json() == DOCUMENT
    assert response.get_json()["openapi"].startswith("3.")
    assert document_routes(DOCUMENT) == flask_api_routes(app)
