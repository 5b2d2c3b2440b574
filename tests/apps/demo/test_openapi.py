"""The hub's /openapi.json lists exactly the Flask routes under /api/."""

from __future__ import annotations

from threefold.apps.demo.config import HubConfig
from threefold.apps.demo.web.app import create_app
from threefold.apps.demo.web.openapi import DOCUMENT
from threefold.core.openapi import document_routes, flask_api_routes


def test_openapi_document_matches_the_api_routes() -> None:
    app = create_app(HubConfig())
    response = app.test_client().get("/openapi.json")
    assert response.status_code == 200
    assert response.get_json() == DOCUMENT
    assert document_routes(DOCUMENT) == flask_api_routes(app)
