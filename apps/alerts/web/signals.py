"""Analysts' signals: correct a scored headline's sentiment or topic, judge an alert.

Reading the recent scored headlines is open like the rest of the dashboard API; everything
that names analysts or writes needs `Authorization: Bearer <analyst token>`
(THREEFOLD_ALERTS_ANALYST_TOKENS=name:token,...): 401 without one, 403 with an unknown one,
503 when no analysts are configured. Each write is audited (`core.audit`, kept in Redis).

Message ids come from the producers and need not be unique, so each headline carries a
`text_digest` (SHA-256 of its text) and a correction names the headline by both: one whose
digest matches none of the headlines with that id is a 409, and so is one without a digest
when the id names headlines with different texts.

`GET /api/corrections` and `GET /api/verdicts` answer a page at a time, newest first:
`?limit=` (DEFAULT_PAGE, at most MAX_PAGE) and `?cursor=`, the `next_cursor` of the page
before (null after the last page). A cursor is the position of that page's last record,
base64url-encoded, so a record saved between two pages neither repeats nor shifts the next one.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections.abc import Callable
from functools import wraps
from typing import Any

import redis
from flask import Blueprint, g, request
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
from threefold.apps.alerts.state.signal_store import MAX_SCORED, Page, SignalStore, is_position
from threefold.apps.alerts.web.api import StoreUnavailable, redis_down, unavailable
from threefold.core.audit import audit
from threefold.core.query_args import int_arg
from threefold.core.web import ApiError, named_token_required, read_json_body, require_fields

DIGEST = re.compile(r"[0-9a-f]{64}")
DEFAULT_PAGE = 100
MAX_PAGE = 1000
MAX_PICKED_ALERTS = 100  # alert_id= values in one GET /api/verdicts
MAX_CURSOR_CHARS = 2000  # base64 of a position: 25 + up to 4 * MAX_ID_CHARS UTF-8 bytes

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


def text_digest(text: str) -> str:
    """How a correction names the headline text it was made for: SHA-256 of its UTF-8, hex."""
    return hashlib.sha256(text.encode()).hexdigest()


def _signed_in_analyst() -> str | None:
    """The analyst whose bearer token came with this request, if any: None without a header
    or with a token nobody holds (the sign-in check, GET /api/analyst, says so)."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    known = current_resources().analysts
    if scheme.lower() != "bearer" or not token.strip() or not known:
        return None
    return known.name_for(token.strip())


@signals.get("/headlines")
def headlines() -> dict:
    """The most recently scored headlines, newest first, with the predictions, versions and
    `text_digest`, and the labels an analyst may choose per task. With an analyst's token, each
    also carries the stored corrections: `corrections: {task: {label, analyst, at}}`."""
    limit = int_arg("limit", 50, low=1, high=MAX_SCORED)
    topics = current_resources().settings.topic_labels
    store = _signals()
    shown = [{**r, "text_digest": text_digest(r["text"])} for r in store.recent_scored(limit)]
    if _signed_in_analyst() is not None:
        stored = store.corrections_of(r["text"] for r in shown)
        latest = {(c["task"], c["text"]): c for c in stored}
        for record in shown:
            found = {task: latest.get((task, record["text"])) for task in TASKS}
            record["corrections"] = {
                task: {key: c[key] for key in ("label", "analyst", "at")}
                for task, c in found.items()
                if c is not None
            }
    return {"headlines": shown, "labels": {task: allowed_labels(task, topics) for task in TASKS}}


def _scored_headline(store: SignalStore, message_id: str, digest: str | None) -> dict:
    """The remembered scored headline with this id (and text digest): 404 when none has the
    id, 409 when the digest matches none of them or, without one, their texts differ."""
    same_id = [r for r in store.recent_scored(MAX_SCORED) if r.get("id") == message_id]
    if not same_id:
        raise ApiError(
            404,
            f"no recently scored headline with id {message_id!r}; pick one from "
            f"GET /api/headlines (the last {MAX_SCORED} are kept)",
            code="unknown_message",
            field="message_id",
        )
    if digest is not None:
        chosen = next((r for r in same_id if text_digest(r["text"]) == digest), None)
        if chosen is None:
            raise ApiError(
                409,
                f"no recently scored headline with id {message_id!r} has that text_digest: "
                "its text is not the one shown. Reload GET /api/headlines and correct again",
                code="headline_mismatch",
                field="text_digest",
            )
        return chosen
    if len({r["text"] for r in same_id}) > 1:
        raise ApiError(
            409,
            f"several recent headlines have id {message_id!r} with different texts; send the "
            "text_digest of the one to correct (GET /api/headlines lists it)",
            code="ambiguous_message_id",
            field="text_digest",
        )
    return same_id[0]  # newest first


@signals.post("/corrections")
@analyst_required
def correct() -> tuple[dict, int]:
    """Correct a scored headline: `{message_id, text_digest, task: sentiment|topic, label}`."""
    body = read_json_body()
    require_fields(body, {"message_id": str, "task": str, "label": str})
    digest = body.get("text_digest")
    if digest is not None and not (isinstance(digest, str) and DIGEST.fullmatch(digest)):
        raise ApiError(
            400,
            "text_digest must be the 64 lowercase hex digits GET /api/headlines gives each "
            f"headline (SHA-256 of its text), found {str(digest)[:80]!r}",
            field="text_digest",
        )
    store = _signals()
    message_id = _bounded_id(body["message_id"], "message_id")
    scored = _scored_headline(store, message_id, digest)
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
    """One page of the stored corrections (the latest per headline and task), newest first:
    `?limit=&cursor=`, answered with `{corrections, next_cursor}`."""
    page = _signals().corrections_page(*_page_args("/api/corrections"))
    return {"corrections": page.records, "next_cursor": _next_cursor(page)}


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
    """One page of the stored alert verdicts (the latest per alert), newest first:
    `?limit=&cursor=`, answered with `{verdicts, next_cursor}`. With `?alert_id=` (repeated,
    up to MAX_PICKED_ALERTS) instead: the verdicts of those alerts, the dashboard's question."""
    picked = request.args.getlist("alert_id")
    if not picked:
        page = _signals().verdicts_page(*_page_args("/api/verdicts"))
        return {"verdicts": page.records, "next_cursor": _next_cursor(page)}
    if "cursor" in request.args or "limit" in request.args:
        raise ApiError(
            400,
            "pass alert_id alone: it picks those alerts' verdicts, one page with no cursor. "
            "To page through every verdict leave alert_id out",
            field="alert_id",
        )
    if len(picked) > MAX_PICKED_ALERTS:
        raise ApiError(
            400,
            f"at most {MAX_PICKED_ALERTS} alert_id values per request, found {len(picked)}; "
            "ask for the rest in another request",
            field="alert_id",
        )
    found = _signals().verdicts_of([_bounded_id(a, "alert_id") for a in picked])
    return {"verdicts": sorted(found, key=lambda v: v["at"], reverse=True), "next_cursor": None}


def _page_args(route: str) -> tuple[int, str | None]:
    """`?limit=` and the position `?cursor=` stands for (None: from the newest)."""
    limit = int_arg("limit", DEFAULT_PAGE, low=1, high=MAX_PAGE)
    cursor = request.args.get("cursor", "")
    if not cursor:
        return limit, None
    found = ""
    if len(cursor) <= MAX_CURSOR_CHARS:
        try:
            found = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        except ValueError:  # not base64 (binascii.Error) or not UTF-8 (UnicodeDecodeError)
            found = ""
    if not is_position(found):
        raise ApiError(
            400,
            f"cursor must be the next_cursor of an earlier page of GET {route}, found "
            f"{cursor[:40]!r}; pass next_cursor as it came, or leave cursor out to start "
            "from the newest",
            field="cursor",
        )
    return limit, found


def _next_cursor(page: Page) -> str | None:
    if page.after is None:
        return None
    return base64.urlsafe_b64encode(page.after.encode()).decode().rstrip("=")


def _bounded_id(value: str, field: str) -> str:
    value = value.strip()
    if not value or len(value) > MAX_ID_CHARS:
        raise ApiError(
            400, f"{field} must be 1 to {MAX_ID_CHARS} characters, found {len(value)}", field=field
        )
    return value
