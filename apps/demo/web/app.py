"""The hub app factory: config, static files, templates and the pages blueprint.

The hub is the demo's entry page linking the three apps' pages; its /store redirects to the one
storefront, the recs app's /store, which embeds the FAQ chat widget (`threefold demo` sets the
recs app's `chat_url` and lets the QA app allow the storefront's origin). `threefold demo` also
gives it the health of the alerts consumer it runs, which /healthz reports.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from flask import Flask
from prometheus_client import CollectorRegistry

from threefold.apps.demo.config import HUB_ENV_PREFIX, HubConfig

if TYPE_CHECKING:
    from threefold.apps.demo.stack import ConsumerHealth

# The demo package, whose static/ and templates/ the hub serves.
PACKAGE_DIR = Path(__file__).resolve().parent.parent


def create_app(
    config: HubConfig | None = None,
    *,
    consumer_health: Callable[[], ConsumerHealth] | None = None,
) -> Flask:
    """The hub app; `config` None reads THREEFOLD_HUB_* from the environment.

    `consumer_health`: the alerts consumer's health, for /healthz (503 while it is down).
    """
    from threefold.apps.demo.web.openapi import DOCUMENT
    from threefold.apps.demo.web.pages import CONFIG_KEY, CONSUMER_HEALTH_KEY, pages
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
    app.extensions[CONSUMER_HEALTH_KEY] = consumer_health
    setup_web_app(app, name="hub", registry=CollectorRegistry())
    app.register_blueprint(pages)
    register_openapi(app, DOCUMENT)
    return app
