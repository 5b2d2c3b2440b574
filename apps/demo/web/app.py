"""The hub app factory: config, static files, templates and the pages blueprint.

The hub is the demo's entry page linking the three apps' pages; its /store redirects to the one
storefront, the recs app's /store, which embeds the FAQ chat widget (`threefold demo` sets the
recs app's `chat_url` and lets the QA app allow the storefront's origin).
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
