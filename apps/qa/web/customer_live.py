"""The customer's side of a handoff: live events (SSE or long polling), typing, a left message."""

from __future__ import annotations

import re

from flask import Blueprint, current_app, jsonify, request
from flask.typing import ResponseReturnValue

from threefold.apps.qa.handoff_events import session_channel
from threefold.apps.qa.handoff_queue import ConversationEnded, UnknownConversation
from threefold.apps.qa.resources import EXTENSION_KEY, Resources
from threefold.apps.qa.sessions import valid_session_id
from threefold.apps.qa.web.event_stream import first_event, live_slot, sse_response
from threefold.core.web import ApiError, client_key, read_json_body, require_text

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
    """Server-sent events for this conversation: agent messages, typing, claimed/closed (503
    `streams_full` + Retry-After when the worker or this address has no live slot left)."""
    channel = session_channel(_known_session(session_id))
    return sse_response(_resources().desk.bus, [channel], client=client_key())


@customer_live_blueprint.get("/<session_id>/wait")
def wait(session_id: str) -> ResponseReturnValue:
    """Long polling where SSE is unavailable: `{"event": ...}` at the first event, or null
    after `?timeout=` seconds (default and at most 25); then GET /api/sessions/<id> again.

    `?turns=N&status=S` say what the client last saw (the number of turns and the handoff
    status, empty for none): when the conversation has moved on since, for instance an agent
    replied between that GET and this poll, the answer is `{"event": null, "changed": true}`
    at once, instead of the reply waiting for the next poll. A poll holds one of the live
    slots the event streams hold (503 `streams_full` + Retry-After when none is left).
    """
    resources = _resources()
    channel = session_channel(_known_session(session_id))
    try:
        timeout = float(request.args.get("timeout", MAX_WAIT_S))
    except ValueError:
        raise ApiError(
            400, "timeout must be a number of seconds (at most 25)", field="timeout"
        ) from None
    if not 0 < timeout <= MAX_WAIT_S:
        raise ApiError(400, f"timeout must be within (0, {MAX_WAIT_S:g}] seconds", field="timeout")
    seen_turns = request.args.get("turns")
    seen_status = request.args.get("status")
    if seen_turns is not None and not re.fullmatch(r"[0-9]{1,9}", seen_turns):
        raise ApiError(
            400,
            f"turns must be a count of turns (0 or more); found {seen_turns[:40]!r}",
            field="turns",
        )

    def changed() -> bool:
        if seen_turns is None and seen_status is None:
            return False
        session = resources.sessions.get(session_id)
        state = resources.desk.customer_state(session_id)
        turns = len(session.turns) if session is not None else 0
        status = state["status"] if state else ""
        return (seen_turns is not None and int(seen_turns) != turns) or (
            seen_status is not None and seen_status != status
        )

    with live_slot(client_key()):
        event = first_event(resources.desk.bus, [channel], seconds=timeout, stale=changed)
    if event is None and changed():
        return jsonify({"event": None, "changed": True})
    return jsonify({"event": event})


@customer_live_blueprint.post("/<session_id>/typing")
def typing(session_id: str) -> ResponseReturnValue:
    """The console shows "customer is typing…" (only while a person has the conversation)."""
    desk = _resources().desk
    if desk.active(_known_session(session_id)) is not None:
        desk.typing(session_id, agent=None)
    return "", 204


@customer_live_blueprint.post("/<session_id>/message-for-team")
def leave_message(session_id: str) -> ResponseReturnValue:
    """`{"text": ...}`: nobody answered in time; the message is stored and shown in the console.
    409 `conversation_ended` once the team has ended the conversation (nobody would read it)."""
    resources = _resources()
    _known_session(session_id)
    body = read_json_body(max_bytes=resources.config.max_body_bytes)
    text = require_text(
        body,
        "text",
        max_chars=resources.config.max_message_chars,
        empty_hint="type the message for our team",
    )
    try:
        conversation = resources.desk.leave_message(session_id, text)
    except UnknownConversation:  # the agents' wording points at their console: not for customers
        raise ApiError(
            404,
            "this conversation was never handed to our team, so there is no one to leave a "
            "message for; ask for a person in the chat first",
            code="unknown_conversation",
        ) from None
    except ConversationEnded as ended:
        raise ApiError(
            409,
            "our team has ended this conversation, so nobody would read a message left in it; "
            "ask for a person in the chat to reach our team again",
            code="conversation_ended",
            conversation_status=ended.status,
        ) from None
    return jsonify({"status": "stored", "session_id": conversation.session_id}), 201
