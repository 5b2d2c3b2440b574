"""The QA bot's OpenAPI document: chat, customer live events, admin KB, review queue, agents."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from threefold.core.openapi import openapi_document, operation, path_param, query_param

SESSION = path_param("session_id", "the 32-hex-character id returned by POST /api/chat")
FAQ = path_param("faq_id", "an FAQ entry id")
TEXT_BODY = {"type": "object", "required": ["text"], "properties": {"text": {"type": "string"}}}
OBJECT = {"type": "object"}
FAQ_ENTRY = {
    "type": "object",
    "required": ["id", "answer"],
    "properties": {
        "id": {"type": "string"},
        "question": {"type": "string"},
        "questions": {"type": "array", "items": {"type": "string"}},
        "answer": {"type": "string"},
        "category": {"type": "string"},
    },
}
CSV = {"type": "string"}
STRINGS = {"type": "array", "items": {"type": "string"}}
REVIEW_ITEMS = {"type": "object", "required": ["items"], "properties": {"items": STRINGS}}
REVIEW_PARAPHRASE = {
    "type": "object",
    "required": ["items", "faq_id"],
    "properties": {"items": STRINGS, "faq_id": {"type": "string"}, "questions": STRINGS},
}
REVIEW_NEW_FAQ = {
    "type": "object",
    "required": ["items", "id", "answer"],
    "properties": {**FAQ_ENTRY["properties"], "items": STRINGS},
}


def _admin(summary: str, *, errors: Iterable[int] = (), **kwargs: Any) -> dict[str, Any]:
    """An admin operation: bearer admin token; 503 while no token is configured."""
    return operation(summary, tag="admin", auth=True, errors=(*errors, 503), **kwargs)


def _agent(summary: str, *, errors: Iterable[int] = (), **kwargs: Any) -> dict[str, Any]:
    """An agent console operation: bearer agent token; 503 while no agents are configured."""
    return operation(summary, tag="agent", auth=True, errors=(*errors, 503), **kwargs)


DOCUMENT = openapi_document(
    title="threefold QA bot",
    version="1",
    description="FAQ chat bot with human handoff. Errors are JSON: {error, message, ...}.",
    paths={
        "/healthz": {"get": operation("Health (503 while degraded)", tag="ops", errors=(503,))},
        "/api/chat": {
            "post": operation(
                "Ask the bot; the reply is an answer, a clarification or a handoff",
                tag="chat",
                response=OBJECT,
                errors=(404, 503),
                body={
                    "type": "object",
                    "required": ["message"],
                    "properties": {
                        "message": {"type": "string", "minLength": 1},
                        "session_id": {"type": "string"},
                        "faq_id": {"type": "string"},
                        "page_url": {"type": "string"},
                        "with_person": {
                            "type": "boolean",
                            "description": "the client last saw the conversation with a person",
                        },
                    },
                },
            )
        },
        "/api/feedback": {
            "post": operation(
                "Rate an answer",
                tag="chat",
                ok=201,
                response=OBJECT,
                errors=(404, 503),
                body={
                    "type": "object",
                    "required": ["session_id", "turn_id", "rating"],
                    "properties": {
                        "session_id": {"type": "string"},
                        "turn_id": {"type": "string"},
                        "rating": {"type": "string", "enum": ["down", "up"]},
                        "comment": {"type": "string"},
                    },
                },
            )
        },
        "/api/sessions/{session_id}": {
            "get": operation("The conversation so far", tag="chat", params=[SESSION], errors=(404,))
        },
        "/api/sessions/{session_id}/events": {
            "get": operation(
                "Server-sent events of this conversation (503 streams_full + Retry-After when "
                "the server's live connections are all in use)",
                tag="live",
                params=[SESSION],
                media_type="text/event-stream",
                response={"type": "string"},
                errors=(404, 503),
            )
        },
        "/api/sessions/{session_id}/wait": {
            "get": operation(
                "Long poll: the first event, or null after `timeout` seconds (503 streams_full "
                "+ Retry-After when the server's live connections are all in use)",
                tag="live",
                params=[
                    SESSION,
                    query_param(
                        "timeout",
                        {"type": "number", "minimum": 0, "exclusiveMinimum": True, "maximum": 25},
                    ),
                    query_param(
                        "turns",
                        {"type": "integer", "minimum": 0},
                        "turns the client has; a different count answers at once (changed)",
                    ),
                    query_param(
                        "status",
                        {"type": "string"},
                        "handoff status the client has ('' for none); a different one answers "
                        "at once (changed)",
                    ),
                ],
                response=OBJECT,
                errors=(400, 404, 503),
            )
        },
        "/api/sessions/{session_id}/typing": {
            "post": operation(
                "The customer is typing", tag="live", ok=204, params=[SESSION], errors=(404,)
            )
        },
        "/api/sessions/{session_id}/message-for-team": {
            "post": operation(
                "Leave a message when nobody answered (409 conversation_ended once the team "
                "ended the conversation)",
                tag="live",
                ok=201,
                params=[SESSION],
                body=TEXT_BODY,
                response=OBJECT,
                errors=(404, 409, 410),
            )
        },
        "/api/kb": {
            "get": _admin("Every FAQ entry of the serving version", response=OBJECT),
            "post": _admin(
                "Add one FAQ entry", ok=201, body=FAQ_ENTRY, response=OBJECT, errors=(409,)
            ),
        },
        "/api/kb/{faq_id}": {
            "get": _admin("One FAQ entry", params=[FAQ], response=OBJECT, errors=(404,)),
            "put": _admin(
                "Create or replace one FAQ entry",
                params=[FAQ],
                body=FAQ_ENTRY,
                response=OBJECT,
                errors=(409,),
            ),
            "delete": _admin(
                "Delete one FAQ entry", params=[FAQ], response=OBJECT, errors=(404, 409)
            ),
        },
        "/api/kb/reload": {
            "post": _admin("Serve the bot directory's current version", errors=(409,))
        },
        "/api/kb/rollback": {"post": _admin("Re-activate the previous version", errors=(409,))},
        "/api/kb/versions": {
            "get": _admin("Published versions and their history", response=OBJECT)
        },
        "/api/admin/feedback.csv": {
            "get": _admin("Feedback export", media_type="text/csv", response=CSV, errors=(503,))
        },
        "/api/admin/unanswered.csv": {
            "get": _admin(
                "Unanswered questions export", media_type="text/csv", response=CSV, errors=(503,)
            )
        },
        "/api/review": {
            "get": _admin(
                "The review queue: declined questions clustered by meaning, thumbs-down answers, "
                "agents' replies",
                params=[query_param("limit", {"type": "integer", "minimum": 1, "maximum": 1000})],
                response=OBJECT,
                errors=(400, 503),
            )
        },
        "/api/review/paraphrase": {
            "post": _admin(
                "Add review items' questions to an FAQ as paraphrases",
                body=REVIEW_PARAPHRASE,
                response=OBJECT,
                errors=(400, 404, 409),
            )
        },
        "/api/review/new-faq": {
            "post": _admin(
                "Turn review items into a new FAQ",
                ok=201,
                body=REVIEW_NEW_FAQ,
                response=OBJECT,
                errors=(400, 409),
            )
        },
        "/api/review/dismiss": {
            "post": _admin(
                "Take review items out of the queue",
                body=REVIEW_ITEMS,
                response=OBJECT,
                errors=(400, 409),
            )
        },
        "/api/agent/me": {"get": _agent("The signed-in agent", response=OBJECT)},
        "/api/agent/conversations": {
            "get": _agent(
                "Conversations with this handoff status, oldest first",
                params=[
                    query_param(
                        "status",
                        {"type": "string", "enum": ["waiting", "claimed", "closed", "released"]},
                    ),
                    query_param(
                        "limit",
                        {"type": "integer", "minimum": 1, "maximum": 1000},
                        "default: every waiting or claimed one, 100 closed or released",
                    ),
                    query_param(
                        "offset", {"type": "integer", "minimum": 0}, "where the page starts"
                    ),
                ],
                response={"type": "array", "items": OBJECT},
                errors=(400,),
            )
        },
        "/api/agent/conversations/{session_id}": {
            "get": _agent(
                "Transcript and candidate FAQs", params=[SESSION], response=OBJECT, errors=(404,)
            )
        },
        "/api/agent/conversations/{session_id}/claim": {
            "post": _agent(
                "Claim the conversation", params=[SESSION], response=OBJECT, errors=(404, 409)
            )
        },
        "/api/agent/conversations/{session_id}/messages": {
            "post": _agent(
                "Reply to the customer",
                ok=201,
                params=[SESSION],
                body=TEXT_BODY,
                response=OBJECT,
                errors=(404, 409, 410),
            )
        },
        "/api/agent/conversations/{session_id}/release": {
            "post": _agent(
                "Hand back to the bot", params=[SESSION], response=OBJECT, errors=(404, 409, 410)
            )
        },
        "/api/agent/conversations/{session_id}/close": {
            "post": _agent(
                "Close the conversation", params=[SESSION], response=OBJECT, errors=(404, 409, 410)
            )
        },
        "/api/agent/conversations/{session_id}/typing": {
            "post": _agent("The agent is typing", ok=204, params=[SESSION], errors=(404, 409, 410))
        },
        "/api/agent/events": {
            "get": _agent(
                "Server-sent events of the queue (503 streams_full + Retry-After also when the "
                "server's live connections are all in use)",
                media_type="text/event-stream",
                response={"type": "string"},
            )
        },
    },
)
