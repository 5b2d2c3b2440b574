"""The agent console: the /agent page and /api/agent/... (bearer token of one agent).

Every route answers 401 without a token, 403 with a token no agent has, and 503 when no agent
tokens are configured (THREEFOLD_QA_AGENT_TOKENS).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Blueprint, current_app, g, jsonify, request, send_from_directory
from flask.typing import ResponseReturnValue

from threefold.apps.qa.handoff_events import QUEUE_CHANNEL
from threefold.apps.qa.handoff_queue import ACTIVE, STATUSES
from threefold.apps.qa.resources import EXTENSION_KEY, Resources
from threefold.apps.qa.sessions import valid_session_id
from threefold.apps.qa.web.event_stream import sse_response
from threefold.apps.qa.web.pages import STATIC_DIR
from threefold.core.web import ApiError, named_token_required, read_json_body, require_text

agent_blueprint = Blueprint("qa_agent", __name__)
api = "/api/agent"
ENDED_PAGE = 100  # closed or released conversations listed when no limit is given
MAX_PAGE = 1000
MAX_OFFSET = 10_000_000


def _resources() -> Resources:
    return current_app.extensions[EXTENSION_KEY]


def agent_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """Sets `g.agent` to the display name of the agent whose bearer token came with the request."""

    @named_token_required(
        lambda: _resources().agents,
        person="agent",
        disabled="agent console disabled: no agents configured. Set "
        "THREEFOLD_QA_AGENT_TOKENS=name:token,name:token",
        code="no_agents_configured",
    )
    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        g.agent = g.signed_in
        return view(*args, **kwargs)

    return wrapped


def _conversation_id(session_id: str) -> str:
    if not valid_session_id(session_id):
        raise ApiError(
            404,
            f"no conversation {session_id[:40]!r}: session ids are 32 hex characters",
            code="unknown_conversation",
        )
    return session_id


@agent_blueprint.get("/agent")
def console() -> ResponseReturnValue:
    """The console page (it signs in with the agent's token, kept in the tab's sessionStorage)."""
    return send_from_directory(STATIC_DIR, "agent.html")


@agent_blueprint.get(f"{api}/me")
@agent_required
def me() -> ResponseReturnValue:
    return jsonify({"agent": g.agent})


def _whole_number(name: str, default: int | None, low: int, high: int) -> int | None:
    """The query parameter `name` (`default` when absent): a 400 unless from `low` to `high`."""
    raw = request.args.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
        raise ApiError(
            400,
            f"{name} must be a whole number from {low} to {high}, found {raw[:20]!r}",
            field=name,
        )
    return int(raw)


@agent_blueprint.get(f"{api}/conversations")
@agent_required
def list_conversations() -> ResponseReturnValue:
    """`?status=waiting|claimed|closed|released` (default waiting), oldest handoff first;
    `&limit=` (1 to 1000; default all of the waiting or claimed, 100 of the ended) `&offset=`
    (default 0): the next page starts at offset + limit, an empty page is past the end."""
    status = request.args.get("status", "waiting")
    if status not in STATUSES:
        raise ApiError(
            400,
            f"status must be one of {list(STATUSES)}, found {status[:20]!r}",
            field="status",
        )
    default_limit = None if status in ACTIVE else ENDED_PAGE
    limit = _whole_number("limit", default_limit, 1, MAX_PAGE)
    offset = _whole_number("offset", 0, 0, MAX_OFFSET) or 0
    desk = _resources().desk
    listed = desk.conversations(status, limit=limit, offset=offset)
    return jsonify([desk.summary(c) for c in listed])


@agent_blueprint.get(f"{api}/conversations/<session_id>")
@agent_required
def get_conversation(session_id: str) -> ResponseReturnValue:
    """Transcript, the bot's top candidate FAQs with answers, page URL, left message."""
    desk = _resources().desk
    return jsonify(desk.detail(desk.get(_conversation_id(session_id))))


@agent_blueprint.post(f"{api}/conversations/<session_id>/claim")
@agent_required
def claim(session_id: str) -> ResponseReturnValue:
    """200 when this agent holds it now; 409 when another agent does."""
    conversation = _resources().desk.claim(_conversation_id(session_id), g.agent)
    return jsonify(_resources().desk.summary(conversation))


@agent_blueprint.post(f"{api}/conversations/<session_id>/messages")
@agent_required
def send_message(session_id: str) -> ResponseReturnValue:
    """`{"text": ...}` -> 201 with the stored turn; the customer's widget shows it at once."""
    resources = _resources()
    body = read_json_body(max_bytes=resources.config.max_body_bytes)
    text = require_text(
        body, "text", max_chars=resources.config.max_message_chars, empty_hint="type a reply"
    )
    turn = resources.desk.reply(_conversation_id(session_id), g.agent, text)
    return jsonify(turn.__dict__), 201


@agent_blueprint.post(f"{api}/conversations/<session_id>/release")
@agent_required
def release(session_id: str) -> ResponseReturnValue:
    """Hand the conversation back to the bot."""
    desk = _resources().desk
    return jsonify(desk.summary(desk.end(_conversation_id(session_id), g.agent, "released")))


@agent_blueprint.post(f"{api}/conversations/<session_id>/close")
@agent_required
def close(session_id: str) -> ResponseReturnValue:
    """Close the conversation; the bot answers the customer's next message."""
    desk = _resources().desk
    return jsonify(desk.summary(desk.end(_conversation_id(session_id), g.agent, "closed")))


@agent_blueprint.post(f"{api}/conversations/<session_id>/typing")
@agent_required
def typing(session_id: str) -> ResponseReturnValue:
    """The customer's widget shows "<agent> is typing…" for a few seconds."""
    _resources().desk.typing(_conversation_id(session_id), agent=g.agent)
    return "", 204


@agent_blueprint.get(f"{api}/events")
@agent_required
def events() -> ResponseReturnValue:
    """Server-sent events of the queue: conversation changes and customer typing (503
    `streams_full` + Retry-After when the worker or this agent has no live slot left)."""
    return sse_response(_resources().desk.bus, [QUEUE_CHANNEL], client=f"agent:{g.agent}")
