"""Analysts' signals: correct a scored headline's sentiment or topic, judge an alert.

Reading the recent scored headlines is open like the rest of the dashboard API; everything
that names analysts or writes needs `Authorization: Bearer <analyst token>`
(THREEFOLD_ALERTS_ANALYST_TOKENS=name:token,...): 401 without one, 403 with an unknown one,
503 when no analysts are configured. Each write is audited (`core.audit`, kept in Redis).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import wraps
from typing import Any

import redis
from flask import Blueprint, g
from flask.typing import ResponseReturnValue

from threefold.apps.alerts.messages import MAX_ID_CHARS
from threefold.apps.alerts.resources import REDIS_FIX, current_resources
from threefold.apps.alerts.signals import (
    TASKS,
    InvalidSignal,
    allowed_labels,
    make_correction,
    make_verdict,
)
from threefold.apps.alerts.state.signal_store import MAX_SCORED, SignalStore
from threefold.apps.alerts.web.api import StoreUnavailable, redis_down, unavailable
from threefold.core.audit import audit
from threefold.core.query_args import int_arg
from threefold.core.web import ApiError, named_token_required, read_json_body, require_fields

signals = Blueprint("alerts_signals", __name__, url_prefix="/api")
signals.register_error_handler(StoreUnavailable, unavailable)
signals.register_error_handler(redis.RedisError, redis_down)


@signals.errorhandler(InvalidSignal)
def _invalid(exc: InvalidSignal) -> ResponseReturnValue:
    return ApiError(400, str(exc), field=exc.field).to_response()


def _signals() -> SignalStore:
    store = current_resources().signals
    if store is None:
        raise StoreUnavailable("not configured", f"the dashboard has no Redis: {REDIS_FIX}")
    return store


def analyst_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """Sets `g.analyst` to the name of the analyst whose bearer token came with the request."""

    @named_token_required(
        lambda: current_resources().analysts,
        person="analyst",
        disabled="corrections are disabled: no analysts configured. Set "
        "THREEFOLD_ALERTS_ANALYST_TOKENS=name:token,name:token",
        code="no_analysts_configured",
    )
    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        g.analyst = g.signed_in
        return view(*args, **kwargs)

    return wrapped


@signals.get("/analyst")
@analyst_required
def me() -> dict:
    """Who the token belongs to (the dashboard's sign-in check)."""
    return {"analyst": g.analyst}


@signals.get("/headlines")
def headlines() -> dict:
    """The most recently scored headlines, newest first, with the predictions and versions,
    and the labels an analyst may choose per task."""
    limit = int_arg("limit", 50, low=1, high=MAX_SCORED)
    topics = current_resources().settings.topic_labels
    return {
        "headlines": _signals().recent_scored(limit),
        "labels": {task: allowed_labels(task, topics) for task in TASKS},
    }


@signals.post("/corrections")
@analyst_required
def correct() -> tuple[dict, int]:
    """Correct a scored headline: `{message_id, task: sentiment|topic, label}`."""
    body = read_json_body()
    require_fields(body, {"message_id": str, "task": str, "label": str})
    store = _signals()
    message_id = _bounded_id(body["message_id"], "message_id")
    scored = store.scored_message(message_id)
    if scored is None:
        raise ApiError(
            404,
            f"no recently scored headline with id {message_id!r}; pick one from "
            f"GET /api/headlines (the last {MAX_SCORED} are kept)",
            code="unknown_message",
            field="message_id",
        )
    record = make_correction(
        scored,
        body["task"],
        body["label"],
        analyst=g.analyst,
        topic_labels=current_resources().settings.topic_labels,
        now=time.time(),
    )
    store.save_correction(record)
    audit(
        "correct_label",
        store=store.append_audit,
        who=g.analyst,
        message_id=message_id,
        task=record["task"],
        label=record["label"],
        predicted=record["predicted"],
        model_version=record["model_version"],
    )
    return {"correction": record}, 201


@signals.get("/corrections")
@analyst_required
def corrections() -> dict:
    """Every stored correction, oldest first (the latest per headline and task)."""
    return {"corrections": _signals().corrections()}


@signals.post("/alerts/<alert_id>/verdict")
@analyst_required
def judge_alert(alert_id: str) -> tuple[dict, int]:
    """Mark an alert a false alarm or a true one: `{verdict: false_alarm|true_alarm, note?}`."""
    body = read_json_body()
    require_fields(body, {"verdict": str})
    note = body.get("note", "")
    if not isinstance(note, str):
        raise ApiError(400, f"field 'note' must be str, found {type(note).__name__}", field="note")
    alert_id = _bounded_id(alert_id, "alert_id")
    state = current_resources().store
    if state is None:
        raise StoreUnavailable("not configured", f"the dashboard has no Redis: {REDIS_FIX}")
    alert = next((a for _, a in state.recent_alerts(1000) if a.get("alert_id") == alert_id), None)
    if alert is None:
        raise ApiError(
            404,
            f"no recent alert with id {alert_id!r}; pick one from GET /api/alerts",
            code="unknown_alert",
        )
    record = make_verdict(
        alert, body["verdict"], analyst=g.analyst, note=note.strip(), now=time.time()
    )
    store = _signals()
    store.save_verdict(record)
    audit(
        "judge_alert",
        store=store.append_audit,
        who=g.analyst,
        alert_id=alert_id,
        verdict=record["verdict"],
    )
    return {"verdict": record}, 201


@signals.get("/verdicts")
@analyst_required
def verdicts() -> dict:
    """Every stored alert verdict, oldest first (the latest per alert)."""
    return {"verdicts": _signals().verdicts()}


def _bounded_id(value: str, field: str) -> str:
    value = value.strip()
    if not value or len(value) > MAX_ID_CHARS:
        raise ApiError(
            400, f"{field} must be 1 to {MAX_ID_CHARS} characters, found {len(value)}", field=field
        )
    return value
