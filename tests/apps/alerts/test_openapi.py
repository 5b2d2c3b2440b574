"""The dashboard's /openapi.json lists exactly the Flask routes under /api/."""

from __future__ import annotations

from threefold.apps.alerts.config import AlertsConfig
from threefold.apps.alerts.resources import open_resources
from threefold.apps.alerts.web import create_app
from threefold.apps.alerts.web.openapi import DOCUMENT
from threefold.core.openapi import document_routes, flask_api_routes
from threefold.streaming.connections import RedisSettings


def test_openapi_document_matches_the_api_routes() -> None:
    config = AlertsConfig()
    app = create_app(config, open_resources(config, RedisSettings(url=None)))
    response = app.test_client().get("/openapi.json")
    assert response.status_code == 200
    assert response.get_json() == DOCUMENT
    assert document_routes(DOCUMENT) == flask_api_routes(app)
