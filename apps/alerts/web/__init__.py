"""The alerts dashboard: `create_app` wires the pages and the JSON API blueprints."""

from __future__ import annotations

import os
from pathlib import Path

from flask import Flask

from threefold.apps.alerts.config import AlertsConfig
from threefold.apps.alerts.resources import EXTENSION, Resources, open_resources
from threefold.apps.alerts.web.api import FEED_SLOTS, FEEDS_PER_CLIENT, api
from threefold.apps.alerts.web.openapi import DOCUMENT
from threefold.apps.alerts.web.pages import pages
from threefold.apps.alerts.web.signals import signals
from threefold.core.openapi import register_openapi
from threefold.core.settings import load_settings
from threefold.core.stream_slots import StreamSlots, server_threads, worker_stream_slots
from threefold.core.web import setup_web_app
from threefold.streaming.connections import RedisSettings

HERE = Path(__file__).resolve().parent


def create_app(settings: AlertsConfig | None = None, resources: Resources | None = None) -> Flask:
    """Flask app factory; `resources` default to the Redis of REDIS_URL (none: degraded)."""
    settings = settings or AlertsConfig.from_env()
    if resources is None:
        resources = open_resources(settings, load_settings(RedisSettings, "REDIS_"))
    # An explicit instance_path: Flask cannot find one for a package inside the editable
    # install's `threefold` namespace (StopIteration in flask.sansio.scaffold.find_package).
    app = Flask(__name__, static_folder=None, instance_path=str(HERE / "instance"))
    setup_web_app(
        app,
        name="alerts",
        registry=resources.registry,
        allowed_origins=settings.allowed_origins,
        rate_limit_per_minute=settings.rate_limit_per_minute,
        trusted_proxies=settings.trusted_proxies,
        redis=getattr(resources.store, "client", None),
        redis_prefix=settings.redis_prefix,
    )
    app.register_blueprint(api)
    app.register_blueprint(signals)
    app.register_blueprint(pages)
    register_openapi(app, DOCUMENT)
    app.extensions[EXTENSION] = resources
    # Live feeds hold a thread each: leave some of gunicorn's threads to the other requests.
    feeds = worker_stream_slots(server_threads(os.environ))
    app.extensions[FEED_SLOTS] = StreamSlots(feeds, per_client=FEEDS_PER_CLIENT)
    return app
