"""Flask app factory of the QA bot: wires settings, resources and the blueprints."""

from __future__ import annotations

import logging
import os

from flask import Flask

from threefold.apps.qa.config import QAConfig
from threefold.apps.qa.resources import EXTENSION_KEY, Resources, open_resources
from threefold.apps.qa.web import pages
from threefold.apps.qa.web.admin import TOKEN_KEY, admin_blueprint
from threefold.apps.qa.web.agent import agent_blueprint
from threefold.apps.qa.web.chat import chat_blueprint
from threefold.apps.qa.web.customer_live import customer_live_blueprint
from threefold.apps.qa.web.event_stream import STREAM_SLOTS, live_slots
from threefold.apps.qa.web.handoff_errors import install_handoff_errors
from threefold.apps.qa.web.openapi import DOCUMENT
from threefold.apps.qa.web.pages import STATIC_DIR, pages_blueprint
from threefold.apps.qa.web.review import review_blueprint
from threefold.core.openapi import register_openapi
from threefold.core.settings import load_settings, reveal
from threefold.core.web import setup_web_app
from threefold.streaming.connections import RedisSettings

logger = logging.getLogger(__name__)


def create_app(settings: QAConfig | None = None, resources: Resources | None = None) -> Flask:
    """The QA bot service: chat, admin, agent and review API, health, metrics, pages.

    Starts the resources' background work (`Resources.start`); `Resources.close` stops it, and
    runs at the process's exit when nobody called it (e.g. a gunicorn worker stopping).

    Args:
        settings: None reads THREEFOLD_QA_* from the environment.
        resources: None opens them from `settings` and REDIS_* (see `resources.open_resources`).
    """
    if settings is None:
        settings = QAConfig.from_env()
    if resources is None:
        from threefold.core.base_model import configure_offline

        configure_offline()
        resources = open_resources(settings, load_settings(RedisSettings, "REDIS_"))
    # Named after a module, not this package: for a package Flask looks up its folder among the
    # `threefold` namespace paths, which an editable install does not list.
    app = Flask(pages.__name__, static_folder=str(STATIC_DIR), static_url_path="/static")
    app.config[TOKEN_KEY] = reveal(settings.admin_token)
    app.json.sort_keys = False
    setup_web_app(
        app,
        name="qa",
        registry=resources.registry,
        allowed_origins=settings.allowed_origins,
        rate_limit_per_minute=settings.rate_limit_per_minute,
        trusted_proxies=settings.trusted_proxies,
        redis=resources.redis,
        redis_prefix=settings.redis_prefix,
    )
    app.extensions[EXTENSION_KEY] = resources
    # Live updates hold a thread each: some of gunicorn's threads are always left to the rest.
    app.extensions[STREAM_SLOTS] = live_slots(os.environ)
    app.register_blueprint(chat_blueprint)
    app.register_blueprint(admin_blueprint)
    app.register_blueprint(pages_blueprint)
    app.register_blueprint(agent_blueprint)
    app.register_blueprint(customer_live_blueprint)
    app.register_blueprint(review_blueprint)
    register_openapi(app, DOCUMENT)
    install_handoff_errors(app)
    resources.start()
    logger.info("QA bot app ready: bot %s, %s", resources.manager.bot.version, settings)
    return app
