"""Handoff errors and a Redis outage as JSON answers (4xx for the caller, 503 + Retry-After)."""

from __future__ import annotations

from flask import Flask, Response
from redis.exceptions import RedisError

from threefold.apps.qa.agent_desk import SessionExpired
from threefold.apps.qa.handoff_queue import (
    ConversationEnded,
    HandoffError,
    HeldByAnother,
    NotClaimed,
    UnknownConversation,
)
from threefold.core.web import ApiError

RETRY_AFTER_S = 5


def api_error_for(error: HandoffError) -> ApiError:
    """The HTTP answer to a transition the conversation does not allow."""
    if isinstance(error, UnknownConversation):
        return ApiError(
            404,
            "no handed-off conversation for this session id; list them with "
            "GET /api/agent/conversations?status=waiting",
            code="unknown_conversation",
        )
    if isinstance(error, HeldByAnother):
        return ApiError(
            409,
            f"{error.agent} has claimed this conversation; only they can answer, release or "
            "close it",
            code="claimed_by_another_agent",
            agent=error.agent,
        )
    if isinstance(error, NotClaimed):
        return ApiError(
            409,
            "the conversation is waiting; claim it first (POST .../claim)",
            code="not_claimed",
        )
    if isinstance(error, ConversationEnded):
        return ApiError(
            410,
            f"the conversation is {error.status}; the bot answers this customer again",
            code="conversation_ended",
            conversation_status=error.status,
        )
    if isinstance(error, SessionExpired):
        return ApiError(
            410,
            "the customer's session has expired; close the conversation",
            code="session_expired",
        )
    return ApiError(409, str(error))


def install_handoff_errors(app: Flask) -> None:
    @app.errorhandler(HandoffError)
    def _handoff(error: HandoffError) -> Response:
        return api_error_for(error).to_response()

    @app.errorhandler(RedisError)
    def _redis_down(error: RedisError) -> Response:
        app.logger.warning("redis unavailable: %s", type(error).__name__)
        response = ApiError(
            503,
            f"Redis does not answer, so conversations cannot be read or changed; retry in "
            f"{RETRY_AFTER_S} s",
            code="redis_unavailable",
        ).to_response()
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
        return response
