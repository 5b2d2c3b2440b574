"""Flask app factory of the recommendation service: wires settings, resources and blueprints."""

from __future__ import annotations

from pathlib import Path

from flask import Flask

from threefold.apps.recs.config import RecsConfig
from threefold.apps.recs.resources import Resources, open_resources
from threefold.apps.recs.web.ab import ab_api
from threefold.apps.recs.web.events import events_api
from threefold.apps.recs.web.impressions import impressions_api
from threefold.apps.recs.web.items import ADMIN_TOKEN_KEY, items_api
from threefold.apps.recs.web.openapi import DOCUMENT
from threefold.apps.recs.web.pages import pages
from threefold.apps.recs.web.recommendations import recommendations
from threefold.apps.recs.web.shared import EXTENSION
from threefold.core.base_model import configure_offline
from threefold.core.openapi import register_openapi
from threefold.core.settings import load_settings, reveal
from threefold.core.web import setup_web_app
from threefold.streaming.connections import RedisSettings

HERE = Path(__file__).resolve().parent


def create_app(settings: RecsConfig | None = None, resources: Resources | None = None) -> Flask:
    """The recs API + storefront; without `resources` they are opened from the environment."""
    configure_offline()
    settings = settings or RecsConfig.from_env()
    if resources is None:
        resources = open_resources(settings, load_settings(RedisSettings, "REDIS_"))
    # explicit paths: Flask cannot locate a package inside the `threefold` namespace itself
    app = Flask(__name__, static_folder=None, root_path=str(HERE), instance_path=str(HERE))
    app.config[ADMIN_TOKEN_KEY] = reveal(settings.admin_token)
    setup_web_app(
        app,
        name="recs",
        registry=resources.registry,
        allowed_origins=settings.allowed_origins,
        rate_limit_per_minute=settings.rate_limit_per_minute,
        trusted_proxies=settings.trusted_proxies,
        redis=resources.redis.client(),
        redis_prefix=settings.redis_prefix,
    )
    app.extensions[EXTENSION] = resources
    blueprints = (recommendations, events_api, impressions_api, ab_api, items_api, pages)
    for blueprint in blueprints:
        app.register_blueprint(blueprint)
    register_openapi(app, DOCUMENT)
    return app
