"""Flask API of the recommendation service: app factory, blueprints, shared state."""

from __future__ import annotations

import atexit
import base64
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from flask import Blueprint, Flask, current_app, jsonify, request, send_from_directory
from prometheus_client import CollectorRegistry, Counter, Gauge

from threefold.apps.recs.cache import CacheMetrics, RedisState
from threefold.apps.recs.candidates import DEFAULT_TRENDING_WINDOW
from threefold.apps.recs.catalog import Item, load_catalog, parse_item
from threefold.apps.recs.config import RecsConfig
from threefold.apps.recs.events import Event, load_events, parse_event
from threefold.apps.recs.history import UserHistories
from threefold.apps.recs.recommender import Recommender
from threefold.apps.recs.rules import decode_cursor
from threefold.core.encoder import TextEncoder
from threefold.core.errors import ConfigError, DataError
from threefold.core.query_args import bool_arg, float_arg, int_arg
from threefold.core.settings import reveal
from threefold.core.web import ApiError, bearer_token_required, read_json_body, setup_web_app

logger = logging.getLogger(__name__)

EXTENSION = "threefold_recs"
ADMIN_TOKEN_KEY = "RECS_ADMIN_TOKEN"
STATIC_DIR = Path(__file__).resolve().parent / "static"


@dataclass
class RecsState:
    """Everything the views share, created once in `create_app`."""

    config: RecsConfig
    recommender: Recommender
    histories: UserHistories
    redis: RedisState
    metrics: CacheMetrics
    served: Counter
    events_total: Counter
    model_id: str
    model_info: dict[str, Any]
    applied_changes: int = 0
    unpublished_changes: int = 0
    last_sync: float = 0.0
    redis_service: Any = None
    sync_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def catalog_version(self) -> str:
        return f"{self.applied_changes}.{self.unpublished_changes}"

    def sync_catalog(self, *, force: bool = False) -> None:
        """Apply item changes other workers published (at most every catalog_sync_seconds)."""
        if self.redis.url is None:
            return
        now = time.monotonic()
        if not force and now - self.last_sync < self.config.catalog_sync_seconds:
            return
        with self.sync_lock:
            self.last_sync = now
            changes = self.redis.changes_since(self.applied_changes)
            for change in changes or ():
                try:
                    self._apply(change)
                except (DataError, KeyError, TypeError, ValueError) as exc:
                    logger.error("skipping a malformed catalog change %r: %s", change, exc)
                self.applied_changes += 1

    def _apply(self, change: Mapping[str, Any]) -> None:
        if change.get("op") == "delete":
            self.recommender.remove_item(str(change["item_id"]))
            return
        item = parse_item(change["item"])
        vectors: dict[str, np.ndarray] = {}
        if change.get("model_id") == self.model_id and change.get("vector"):
            vectors[item.item_id] = np.frombuffer(
                base64.b64decode(change["vector"]), dtype=np.float32
            )
        self.recommender.upsert_items([item], vectors)

    def publish(self, change: dict[str, Any]) -> None:
        """Tell other workers about a change this worker already applied."""
        with self.sync_lock:
            length = self.redis.publish_change(change)
            if length is None:
                self.unpublished_changes += 1
            elif length == self.applied_changes + 1:
                self.applied_changes = length
        self.last_sync = 0.0


def create_app(config: RecsConfig | None = None, *, encoder: TextEncoder | None = None) -> Flask:
    """Build the app; `encoder` (a core Embedder) overrides the configured text model."""
    from threefold.apps.recs.ranker_store import RankerModel
    from threefold.core.base_model import base_model_from_env, configure_offline
    from threefold.core.embedder import Embedder

    configure_offline()
    config = config or RecsConfig.from_env()
    app = Flask(__name__, static_folder=None)
    app.config[ADMIN_TOKEN_KEY] = reveal(config.admin_token)
    registry = CollectorRegistry()
    setup_web_app(
        app,
        name="recs",
        registry=registry,
        allowed_origins=config.allowed_origins,
        rate_limit_per_minute=config.rate_limit_per_minute,
        trusted_proxies=config.trusted_proxies,
    )
    redis_url, service = _redis_url(config)
    metrics = CacheMetrics(registry)
    redis = RedisState(
        redis_url,
        prefix=config.redis_prefix,
        metrics=metrics,
        ttl_seconds=config.cache_ttl_seconds,
        timeout_seconds=config.redis_timeout_seconds,
        retry_seconds=config.redis_retry_seconds,
        history_limit=config.history_limit,
    )
    catalog = load_catalog(config.items_path)
    seed = load_events(config.events_path, known_items=catalog) if config.events_path else []
    combiner, info = None, {"model": "base encoder, default weights"}
    window = DEFAULT_TRENDING_WINDOW
    if encoder is None and config.model_dir is not None:
        model = RankerModel.load(config.model_dir)
        encoder, combiner, info = model.encoder, model.combiner, model.info
        window = model.trending_window
    elif encoder is None:
        encoder = Embedder(config.base_model or base_model_from_env(), max_length=128)
    recommender = Recommender(
        catalog,
        encoder,
        combiner=combiner,
        events=seed,
        candidate_pool=config.candidate_pool,
        trending_window=window,
    )
    encoder.load()
    model_id = encoder.model_id
    known = redis.get_vectors(model_id, catalog.ids)
    redis.put_vectors(model_id, recommender.build(known))
    if combiner is None and config.tune_on_start and seed:
        info = {
            "model": "base encoder, combiner tuned on the seed log at start",
            "validation": recommender.tune_combiner(),
        }
    state = RecsState(
        config=config,
        recommender=recommender,
        histories=UserHistories(seed, redis, limit=config.history_limit),
        redis=redis,
        metrics=metrics,
        served=Counter(
            "recs_recommendations_total",
            "Recommendation lists served, by kind (personal, cold_start) and cache use",
            ["kind", "cached"],
            registry=registry,
        ),
        events_total=Counter(
            "recs_events_total", "Events accepted, by type", ["event"], registry=registry
        ),
        model_id=model_id,
        model_info=info,
        redis_service=service,
    )
    Gauge("recs_catalog_items", "Items that can be recommended", registry=registry).set_function(
        lambda: recommender.item_count
    )
    state.sync_catalog(force=True)
    app.extensions[EXTENSION] = state
    app.register_blueprint(recommendations)
    app.register_blueprint(events_api)
    app.register_blueprint(items_api)
    app.register_blueprint(pages)
    return app


def _redis_url(config: RecsConfig) -> tuple[str | None, Any]:
    if config.redis_url is not None or not config.embedded_redis:
        return config.redis_url, None
    from threefold.streaming.services import start_redis

    service = start_redis()
    atexit.register(service.stop)
    logger.info("no REDIS_URL set; started an embedded redis-server at %s", service.url)
    return service.url, service


def _state() -> RecsState:
    return current_app.extensions[EXTENSION]


def _user_id(raw: str | None) -> str:
    if raw is None or not raw.strip():
        raise ApiError(400, "missing query parameter 'user_id'", field="user_id")
    if len(raw) > 128:
        raise ApiError(400, "'user_id' is longer than 128 characters", field="user_id")
    return raw.strip()


# ---------------------------------------------------------------------- recommendations
recommendations = Blueprint("recs_recommendations", __name__, url_prefix="/api")


@recommendations.get("/recommendations")
def get_recommendations() -> Any:
    state = _state()
    config = state.config
    user_id = _user_id(request.args.get("user_id"))
    k = int_arg("k", config.default_k, low=1, high=config.max_k)
    offset = int_arg("offset", 0, low=0, high=10 * config.max_k)
    cursor = request.args.get("cursor")
    if cursor:
        try:
            offset = decode_cursor(cursor)
        except ConfigError as exc:
            raise ApiError(400, str(exc), field="cursor") from None
    diversity = float_arg("diversity", config.default_diversity, low=0.0, high=1.0)
    exclude_seen = bool_arg("exclude_seen", config.exclude_seen)
    category = (request.args.get("category") or "").strip() or None
    if category and not any(
        c.lower() == category.lower() for c in state.recommender.catalog.categories
    ):
        raise ApiError(
            400,
            f"unknown category {category!r}; expected one of "
            f"{state.recommender.catalog.categories}",
            field="category",
        )
    state.sync_catalog()
    variant = (
        f"v{state.catalog_version}|k{k}|o{offset}|c{(category or '').lower()}"
        f"|d{diversity:.3f}|x{int(exclude_seen)}"
    )
    cached = state.redis.get_recs(user_id, variant)
    if cached is not None:
        state.served.labels("cold_start" if cached["cold_start"] else "personal", "yes").inc()
        return jsonify({**cached, "cached": True})
    history = state.histories.get(user_id)
    result = state.recommender.recommend(
        user_id,
        history,
        k=k,
        offset=offset,
        category=category,
        diversity=diversity,
        exclude_seen=exclude_seen,
        exclude_purchased=config.exclude_purchased,
    )
    body = result.to_dict()
    state.redis.put_recs(user_id, variant, body)
    state.served.labels("cold_start" if result.cold_start else "personal", "no").inc()
    return jsonify({**body, "cached": False})


@recommendations.get("/users")
def list_users() -> Any:
    """Users with a history (for the storefront's user picker)."""
    limit = int_arg("limit", 50, low=1, high=1000)
    return jsonify({"users": _state().histories.known_users[:limit]})


@recommendations.get("/categories")
def list_categories() -> Any:
    return jsonify({"categories": _state().recommender.catalog.categories})


def _batch(body: dict[str, Any], key: str, limit: int) -> list[Any]:
    """`{key: [...]}` or one bare object -> the list; 400 when empty, 413 above `limit`."""
    raw = body.get(key) if key in body else [body]
    noun = key[:-1]
    if not isinstance(raw, list) or not raw:
        raise ApiError(400, f"'{key}' must be a non-empty list of {noun} objects", field=key)
    if len(raw) > limit:
        raise ApiError(413, f"batch has {len(raw)} {key}; the limit is {limit}", limit=limit)
    return raw


# ---------------------------------------------------------------------- events
events_api = Blueprint("recs_events", __name__, url_prefix="/api")


@events_api.post("/events")
def post_events() -> Any:
    """One event object, or {"events": [...]}; all are validated before any is stored."""
    state = _state()
    body = read_json_body(max_bytes=state.config.max_body_bytes)
    raw_events = _batch(body, "events", state.config.max_batch_events)
    recommender = state.recommender
    parsed: list[Event] = []
    for index, raw in enumerate(raw_events):
        if not isinstance(raw, dict):
            raise ApiError(
                400, f"event {index} must be an object, found {type(raw).__name__}", index=index
            )
        item_id = raw.get("item_id")
        try:
            event = parse_event(raw)
        except DataError as exc:
            raise ApiError(400, f"event {index}: {exc}", field=exc.column, index=index) from None
        if not recommender.has_item(event.item_id):
            raise ApiError(
                422,
                f"event {index}: unknown item_id {item_id!r}; it is not in the catalog "
                "(add it with POST /api/items first)",
                code="unknown_item",
                field="item_id",
                index=index,
                item_id=event.item_id,
            )
        parsed.append(event)
    shared = state.histories.record(parsed)
    recommender.add_events(parsed)
    state.redis.invalidate(e.user_id for e in parsed)
    for event in parsed:
        state.events_total.labels(event.event).inc()
    return jsonify(
        {
            "accepted": len(parsed),
            "users": sorted({e.user_id for e in parsed}),
            "shared": shared,
        }
    ), 202


# ---------------------------------------------------------------------- items
items_api = Blueprint("recs_items", __name__, url_prefix="/api/items")


@items_api.get("/<item_id>")
def get_item(item_id: str) -> Any:
    state = _state()
    state.sync_catalog()
    item = state.recommender.catalog.get(item_id)
    if item is None or not state.recommender.has_item(item_id):
        raise ApiError(404, f"unknown item_id {item_id!r}", field="item_id")
    return jsonify(item.to_dict())


@items_api.get("/<item_id>/similar")
def similar_items(item_id: str) -> Any:
    state = _state()
    k = int_arg("k", state.config.default_k, low=1, high=state.config.max_k)
    state.sync_catalog()
    if not state.recommender.has_item(item_id):
        raise ApiError(404, f"unknown item_id {item_id!r}", field="item_id")
    similar = state.recommender.similar(item_id, k)
    return jsonify({"item_id": item_id, "items": [r.to_dict() for r in similar]})


def _parse_body_item(values: Any, index: int | None = None) -> Item:
    if not isinstance(values, dict):
        raise ApiError(400, f"item must be an object, found {type(values).__name__}", index=index)
    try:
        return parse_item(values)
    except DataError as exc:
        where = f"item {index}: " if index is not None else ""
        raise ApiError(400, f"{where}{exc}", field=exc.column, index=index) from None


def _store_items(state: RecsState, items: list[Item]) -> dict[str, list[str]]:
    existing = {item.item_id for item in items if state.recommender.has_item(item.item_id)}
    vectors = state.recommender.upsert_items(items)
    state.redis.put_vectors(state.model_id, vectors)
    for item in items:
        state.publish(
            {
                "op": "upsert",
                "item": item.to_dict(),
                "model_id": state.model_id,
                "vector": base64.b64encode(
                    np.asarray(vectors[item.item_id], dtype=np.float32).tobytes()
                ).decode(),
            }
        )
    return {
        "added": [i.item_id for i in items if i.item_id not in existing],
        "updated": [i.item_id for i in items if i.item_id in existing],
    }


@items_api.post("")
@bearer_token_required(ADMIN_TOKEN_KEY)
def add_items() -> Any:
    """One item object or {"items": [...]}; new ids are added, existing ones replaced."""
    state = _state()
    body = read_json_body(max_bytes=state.config.max_body_bytes)
    raw_items = _batch(body, "items", state.config.max_batch_events)
    items = [_parse_body_item(raw, i) for i, raw in enumerate(raw_items)]
    return jsonify(_store_items(state, items)), 201


@items_api.put("/<item_id>")
@bearer_token_required(ADMIN_TOKEN_KEY)
def replace_item(item_id: str) -> Any:
    state = _state()
    body = read_json_body(max_bytes=state.config.max_body_bytes)
    if body.setdefault("item_id", item_id) != item_id:
        raise ApiError(
            400,
            f"body item_id {body['item_id']!r} does not match the URL's {item_id!r}",
            field="item_id",
        )
    return jsonify(_store_items(state, [_parse_body_item(body)]))


@items_api.delete("/<item_id>")
@bearer_token_required(ADMIN_TOKEN_KEY)
def delete_item(item_id: str) -> Any:
    state = _state()
    if not state.recommender.remove_item(item_id):
        raise ApiError(404, f"unknown item_id {item_id!r}", field="item_id")
    state.publish({"op": "delete", "item_id": item_id})
    return jsonify({"deleted": item_id})


# ---------------------------------------------------------------------- health + storefront
pages = Blueprint("recs_pages", __name__)


@pages.get("/healthz")
def healthz() -> Any:
    state = _state()
    redis_status = (
        "disabled" if state.redis.url is None else ("up" if state.redis.available else "down")
    )
    return jsonify(
        {
            "status": "ok",
            "items": state.recommender.item_count,
            "redis": redis_status,
            "cache": state.metrics.snapshot(),
            "catalog_version": state.catalog_version,
            "model": state.model_id,
            "ranker": state.model_info,
        }
    )


@pages.get("/store")
def storefront() -> Any:
    return send_from_directory(STATIC_DIR, "store.html")


@pages.get("/store/static/<path:name>")
def storefront_asset(name: str) -> Any:
    return send_from_directory(STATIC_DIR, name)
