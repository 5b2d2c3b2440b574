"""The hub app factory: config, static files, templates and the pages blueprint.

The hub is the demo's entry page linking the three apps, and a store page combining two. The
store page embeds the FAQ chat widget and the recs app's storefront script, both served by
those apps and calling their APIs cross-origin: the QA and recs apps must list the hub's origin
in their allowed CORS origins (`threefold demo` configures that).
"""

from __future__ import annotations

from pathlib import Path

from flask import Flask
from prometheus_client import CollectorRegistry

from threefold.apps.demo.config import HUB_ENV_PREFIX, HubConfig

# The demo package, whose static/ and templates/ the hub serves.
PACKAGE_DIR = Path(__file__).resolve().parent.parent


def create_app(config: HubConfig | None = None) -> Flask:
    """The hub app; `config` None reads THREEFOLD_HUB_* from the environment."""
    from threefold.apps.demo.web.openapi import DOCUMENT
    from threefold.apps.demo.web.pages import CONFIG_KEY, pages
    from threefold.core.openapi import register_openapi
    from threefold.core.settings import load_settings
    from threefold.core.web import setup_web_app

    config = config or load_settings(HubConfig, HUB_ENV_PREFIX)
    app = Flask(
        __name__,
        static_folder=str(PACKAGE_DIR / "static"),
        static_url_path="/static",
        template_folder=str(PACKAGE_DIR / "templates"),
    )
    app.extensions[CONFIG_KEY] = config
    setup_web_app(app, name="hub", registry=CollectorRegistry())
    app.register_blueprint(pages)
    register_openapi(app, DOCUMENT)
    return app
