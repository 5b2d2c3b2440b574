"""Public chat endpoints: POST /api/chat, POST /api/feedback, GET /api/sessions/<id>."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify
from flask.typing import ResponseReturnValue

from threefold.apps.qa.chat import HandoffUnavailable, UnknownSession, UnknownTurn
from threefold.apps.qa.handoff_queue import TooManyWaiting
from threefold.apps.qa.resources import EXTENSION_KEY, Resources
from threefold.apps.qa.sessions import valid_session_id
from threefold.apps.qa.web.handoff_errors import RETRY_AFTER_S
from threefold.core.web import (
    ApiError,
    client_key,
    read_json_body,
    require_fields,
    require_text,
)

chat_blueprint = Blueprint("qa_chat", __name__, url_prefix="/api")
RATINGS = ("down", "up")
MAX_COMMENT_CHARS = 1000
MAX_URL_CHARS = 2000
WAITING_RETRY_AFTER_S = 60  # a customer over the waiting cap: when to ask again


def _resources() -> Resources:
    return current_app.extensions[EXTENSION_KEY]


def _session_id(body: dict[str, Any], *, required: bool) -> str | None:
    value = body.get("session_id")
    if value is None:
        if required:
            raise ApiError(400, "missing field 'session_id'", field="session_id")
        return None
    if not isinstance(value, str) or not valid_session_id(value):
        raise ApiError(
            400,
            "session_id must be the 32-character hex id returned by /api/chat "
            f"(or omitted to start a session), found {str(value)[:40]!r}",
            field="session_id",
        )
    return value


def _unknown_session(session_id: str | None) -> ApiError:
    return ApiError(
        404,
        "unknown or expired session; start a new one by sending the message without session_id",
        code="unknown_session",
        session_id=session_id,
    )


@chat_blueprint.post("/chat")
def chat() -> ResponseReturnValue:
    """`{session_id?, message, faq_id?, page_url?, with_person?}` -> the bot's reply (answer,
    clarification or handoff), or outcome "agent" with no answer while a person has the
    conversation. `with_person`: the client last saw the conversation with a person (then, while
    the agent desk cannot be read, a 503 rather than a bot answer). A handoff from an address
    with `max_waiting_per_client` conversations waiting already: a 429, nothing stored."""
    resources = _resources()
    body = read_json_body(max_bytes=resources.config.max_body_bytes)
    limit = resources.config.max_message_chars
    message = require_text(
        body,
        "message",
        max_chars=limit,
        empty_hint="type a question",
        code="message_too_long",
        limit=limit,
    )
    session_id = _session_id(body, required=False)
    faq_id = body.get("faq_id")
    if faq_id is not None and not isinstance(faq_id, str):
        raise ApiError(400, f"faq_id must be a string, found {type(faq_id).__name__}")
    page_url = body.get("page_url")
    if page_url is not None and (not isinstance(page_url, str) or len(page_url) > MAX_URL_CHARS):
        raise ApiError(
            400, f"page_url must be a URL of at most {MAX_URL_CHARS} characters", field="page_url"
        )
    with_person = body.get("with_person", False)
    if not isinstance(with_person, bool):
        raise ApiError(
            400,
            f"with_person must be true or false, found {type(with_person).__name__}",
            field="with_person",
        )
    try:
        reply = resources.chat.chat(
            message,
            session_id=session_id,
            faq_id=faq_id,
            page_url=page_url,
            with_person=with_person,
            client=client_key(),
            max_waiting=resources.config.max_waiting_per_client,
        )
    except UnknownSession:
        raise _unknown_session(session_id) from None
    except HandoffUnavailable:
        raise ApiError(
            503,
            "our team cannot be reached right now (Redis does not answer), so this message was "
            f"not taken; send it again in {RETRY_AFTER_S} s",
            code="agents_unreachable",
            retry_after=RETRY_AFTER_S,
        ) from None
    except TooManyWaiting as refused:
        raise ApiError(
            429,
            f"Our team already has {refused.waiting} "
            f"request{'s' if refused.waiting != 1 else ''} for a person waiting from your "
            "network. If you asked already, please wait for their reply there; otherwise ask "
            f"again in {WAITING_RETRY_AFTER_S} s.",
            code="too_many_waiting",
            retry_after=WAITING_RETRY_AFTER_S,
            limit=refused.limit,
        ) from None
    return jsonify(_flag_degraded(reply.to_json(), resources))


def _flag_degraded(body: dict[str, Any], resources: Resources) -> dict[str, Any]:
    """Add `"degraded": "<why>"` while the turn was answered without Redis (no session memory)."""
    reason = resources.degraded_reason()
    return body if reason is None else {**body, "degraded": reason}


@chat_blueprint.post("/feedback")
def feedback() -> ResponseReturnValue:
    """`{session_id, turn_id, rating: "up"|"down", comment?}` -> 201 with the stored record."""
    resources = _resources()
    body = read_json_body(max_bytes=resources.config.max_body_bytes)
    require_fields(body, {"session_id": str, "turn_id": str, "rating": str})
    session_id = _session_id(body, required=True)
    rating = body["rating"]
    if rating not in RATINGS:
        raise ApiError(
            400, f"rating must be one of {list(RATINGS)}, found {rating[:20]!r}", field="rating"
        )
    comment = body.get("comment", "")
    if not isinstance(comment, str) or len(comment) > MAX_COMMENT_CHARS:
        raise ApiError(
            400, f"comment must be text of at most {MAX_COMMENT_CHARS} characters", field="comment"
        )
    try:
        record = resources.chat.record_feedback(
            session_id=session_id, turn_id=body["turn_id"], rating=rating, comment=comment
        )
    except UnknownSession:
        raise _unknown_session(session_id) from None
    except UnknownTurn:
        if resources.degraded_reason() is not None:  # the session could not be read from Redis
            raise ApiError(
                503,
                f"Redis does not answer, so this session's answers cannot be read; send the "
                f"rating again in {RETRY_AFTER_S} s",
                code="redis_unavailable",
                retry_after=RETRY_AFTER_S,
            ) from None
        raise ApiError(
            404, "turn_id is not an answer of this session", code="unknown_turn"
        ) from None
    return jsonify({"status": "stored", "feedback": record}), 201


@chat_blueprint.get("/sessions/<session_id>")
def session_history(session_id: str) -> ResponseReturnValue:
    """The conversation so far (the widget restores it after a page reload).

    Bot turns carry what the widget shows again: `suggestions`, the customer's `rating` and the
    source FAQ's question (`faq_question`).

    Agent turns have `"role": "agent"` and the agent's display name in `agent`; `agent_state`
    is the handoff (waiting, claimed by whom, timed out, ended) or null when there was none.
    """
    if not valid_session_id(session_id):
        raise _unknown_session(None)
    resources = _resources()
    session = resources.sessions.get(session_id)
    if session is None:
        raise _unknown_session(session_id)
    return jsonify(
        {
            "session_id": session.id,
            "turns": resources.chat.session_view(session),
            "handoff": session.handed_off,
            "agent_state": resources.desk.customer_state(session.id),
        }
    )
