"""The customer's side of a handoff: live events (SSE or long polling), typing, a left message."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request
from flask.typing import ResponseReturnValue

from threefold.apps.qa.handoff_events import session_channel
from threefold.apps.qa.resources import EXTENSION_KEY, Resources
from threefold.apps.qa.sessions import valid_session_id
from threefold.apps.qa.web.event_stream import first_event, sse_response
from threefold.core.web import ApiError, read_json_body, require_fields

customer_live_blueprint = Blueprint("qa_customer_live", __name__, url_prefix="/api/sessions")
MAX_WAIT_S = 25.0


def _resources() -> Resources:
    return current_app.extensions[EXTENSION_KEY]


def _known_session(session_id: str) -> str:
    if not valid_session_id(session_id) or _resources().sessions.get(session_id) is None:
        raise ApiError(
            404,
            "unknown or expired session; start a new one by sending a message without session_id",
            code="unknown_session",
        )
    return session_id


@customer_live_blueprint.get("/<session_id>/events")
def events(session_id: str) -> ResponseReturnValue:
    """Server-sent events for this conversation: agent messages, typing, claimed/closed."""
    channel = session_channel(_known_session(session_id))
    return sse_response(_resources().desk.bus, [channel])


@customer_live_blueprint.get("/<session_id>/wait")
def wait(session_id: str) -> ResponseReturnValue:
    """Long polling where SSE is unavailable: `{"event": ...}` at the first event, or null
    after `?timeout=` seconds (default and at most 25); then GET /api/sessions/<id> again."""
    channel = session_channel(_known_session(session_id))
    try:
        timeout = float(request.args.get("timeout", MAX_WAIT_S))
    except ValueError:
        raise ApiError(
            400, "timeout must be a number of seconds (at most 25)", field="timeout"
        ) from None
    if not 0 < timeout <= MAX_WAIT_S:
        raise ApiError(400, f"timeout must be within (0, {MAX_WAIT_S:g}] seconds", field="timeout")
    return jsonify({"event": first_event(_resources().desk.bus, [channel], seconds=timeout)})


@customer_live_blueprint.post("/<session_id>/typing")
def typing(session_id: str) -> ResponseReturnValue:
    """The console shows "customer is typing…" (only while a person has the conversation)."""
    desk = _resources().desk
    if desk.active(_known_session(session_id)) is not None:
        desk.typing(session_id, agent=None)
    return "", 204


@customer_live_blueprint.post("/<session_id>/message-for-team")
def leave_message(session_id: str) -> ResponseReturnValue:
    """`{"text": ...}`: nobody answered in time; the message is stored and shown in the console."""
    resources = _resources()
    _known_session(session_id)
    body = read_json_body(max_bytes=resources.config.max_body_bytes)
    require_fields(body, {"text": str})
    text = body["text"].strip()
    if not text or len(text) > resources.config.max_message_chars:
        raise ApiError(
            400,
            f"text must be 1 to {resources.config.max_message_chars} characters; found {len(text)}",
            field="text",
        )
    conversation = resources.desk.leave_message(session_id, text)
    return jsonify({"status": "stored", "session_id": conversation.session_id}), 201
