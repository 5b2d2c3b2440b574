"""Flask app factory of the QA bot: chat + admin blueprints, health, metrics, widget, demo page."""

from __future__ import annotations

import atexit
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Flask, current_app, jsonify, redirect, send_from_directory
from flask.typing import ResponseReturnValue
from prometheus_client import CollectorRegistry, Counter, Histogram

from threefold.apps.qa.admin_api import TOKEN_KEY, admin_blueprint
from threefold.apps.qa.bot_manager import BotManager
from threefold.apps.qa.chat import ChatReply, ChatService
from threefold.apps.qa.chat_api import chat_blueprint
from threefold.apps.qa.config import QAConfig
from threefold.apps.qa.feedback import FeedbackStore
from threefold.apps.qa.handoff import HandoffNotifier
from threefold.apps.qa.sessions import SessionStore
from threefold.apps.qa.store import BotStore
from threefold.core.errors import ConfigError
from threefold.core.settings import reveal
from threefold.core.web import setup_web_app

if TYPE_CHECKING:
    from threefold.core.embedder import Embedder

logger = logging.getLogger(__name__)
STATIC_DIR = Path(__file__).resolve().parent / "static"


@dataclass
class QAServices:
    """Everything the views need, created once by the factory (app.extensions["threefold_qa"])."""

    config: QAConfig
    manager: BotManager
    chat: ChatService
    sessions: SessionStore
    feedback: FeedbackStore
    notifier: HandoffNotifier
    redis: Any
    registry: CollectorRegistry


pages_blueprint = Blueprint("qa_pages", __name__)


@pages_blueprint.get("/healthz")
def healthz() -> ResponseReturnValue:
    services: QAServices = current_app.extensions["threefold_qa"]
    bot = services.manager.bot
    try:
        redis_ok = bool(services.redis.ping())
    except Exception:  # any connection failure means degraded, reported not raised
        redis_ok = False
    body = {
        "status": "ok" if redis_ok else "degraded",
        "bot_version": bot.version,
        "faqs": len(bot.kb),
        "redis": "ok" if redis_ok else "unreachable",
    }
    return jsonify(body), 200 if redis_ok else 503


@pages_blueprint.get("/")
def index() -> ResponseReturnValue:
    return redirect("/demo")


@pages_blueprint.get("/demo")
def demo() -> ResponseReturnValue:
    """A sample store page with the chat widget embedded by one script tag."""
    return send_from_directory(STATIC_DIR, "demo.html")


def _metrics(registry: CollectorRegistry) -> tuple[Any, Any]:
    replies = Counter(
        "qa_replies_total",
        "Chat replies by outcome and reason",
        ["outcome", "reason"],
        registry=registry,
    )
    confidence = Histogram(
        "qa_confidence",
        "Calibrated confidence of the top candidate",
        registry=registry,
        buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0),
    )
    webhook = Counter(
        "qa_handoff_webhook_total", "Handoff webhook deliveries", ["result"], registry=registry
    )

    def observe(reply: ChatReply) -> None:
        replies.labels(reply.outcome, reply.reason).inc()
        confidence.observe(reply.confidence)

    def on_webhook(ok: bool) -> None:
        webhook.labels("delivered" if ok else "failed").inc()

    return observe, on_webhook


def _redis_client(config: QAConfig) -> tuple[Any, Any]:
    import redis

    url = config.redis_url
    service = None
    if url is None:
        from threefold.streaming.services import start_redis

        service = start_redis()
        url = service.url
        logger.info("no REDIS_URL set: started an embedded redis-server at %s", url)
    return redis.Redis.from_url(url, socket_timeout=5, health_check_interval=30), service


def _ensure_bot(store: BotStore, config: QAConfig, embedder: Embedder | None) -> Embedder | None:
    """Build the bot from `kb_path` when the bot directory is still empty."""
    if store.exists():
        return embedder
    if not config.kb_path:
        raise ConfigError(
            f"no bot in {config.bot_dir!r}. Fix: run `threefold qa build --kb KB.csv --out "
            f"{config.bot_dir}` or set THREEFOLD_QA_KB_PATH to build one at start-up"
        )
    from threefold.apps.qa.builder import build_bot
    from threefold.apps.qa.knowledge_base import KnowledgeBase
    from threefold.core.base_model import base_model_from_env
    from threefold.core.embedder import Embedder

    embedder = embedder or Embedder(base_model_from_env()).load()
    logger.info("bot directory %s is empty: building from %s", config.bot_dir, config.kb_path)
    store.publish(build_bot(KnowledgeBase.load(config.kb_path), embedder))
    return embedder


def create_app(config: QAConfig | None = None, *, embedder: Embedder | None = None) -> Flask:
    """Build the QA bot service.

    Args:
        config: settings; None reads THREEFOLD_QA_* from the environment.
        embedder: an already loaded Embedder to share (used when the bot was built with the same
            model; otherwise the bot's own embedder is loaded).
    """
    from threefold.core.base_model import configure_offline

    configure_offline()
    config = config or QAConfig.from_env()
    app = Flask(__name__, static_folder=str(STATIC_DIR), static_url_path="/static")
    app.config[TOKEN_KEY] = reveal(config.admin_token)
    app.json.sort_keys = False
    registry = CollectorRegistry()
    setup_web_app(
        app,
        name="qa",
        registry=registry,
        allowed_origins=config.allowed_origins,
        rate_limit_per_minute=config.rate_limit_per_minute,
        trusted_proxies=config.trusted_proxies,
    )
    store = BotStore(config.bot_dir)
    embedder = _ensure_bot(store, config, embedder)
    manager = BotManager(store, embedder=embedder)
    manager.reload()
    client, redis_service = _redis_client(config)
    observe, on_webhook = _metrics(registry)
    sessions = SessionStore(client, prefix=config.redis_prefix, ttl_s=config.session_ttl_s)
    feedback = FeedbackStore(client, prefix=config.redis_prefix)
    notifier = HandoffNotifier(
        reveal(config.handoff_webhook), timeout_s=config.handoff_timeout_s, on_result=on_webhook
    )
    chat = ChatService(
        get_bot=lambda: manager.bot,
        sessions=sessions,
        feedback=feedback,
        notifier=notifier,
        threshold=config.threshold,
        ambiguity_margin=config.ambiguity_margin,
        handoff_after_failures=config.handoff_after_failures,
        n_suggestions=config.n_suggestions,
        observe=observe,
    )
    app.extensions["threefold_qa"] = QAServices(
        config=config,
        manager=manager,
        chat=chat,
        sessions=sessions,
        feedback=feedback,
        notifier=notifier,
        redis=client,
        registry=registry,
    )
    if redis_service is not None:
        app.extensions["threefold_qa_redis_service"] = redis_service
        atexit.register(redis_service.stop)
    app.register_blueprint(chat_blueprint)
    app.register_blueprint(admin_blueprint)
    app.register_blueprint(pages_blueprint)
    logger.info("QA bot app ready: bot %s, %s", manager.bot.version, config)
    return app
